//! Restricted-XML stream scanner, stanzas and on-demand element trees.

pub mod escape;
