//! modules (to be written)
