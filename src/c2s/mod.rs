//! c2s (to be written)
