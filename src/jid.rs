//! JIDs (to be written)
