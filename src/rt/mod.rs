//! rt (to be written)
