//! sm (to be written)
