//! hooks (to be written)
