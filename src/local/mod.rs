//! local (to be written)
