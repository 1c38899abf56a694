//! router (to be written)
