//! Sans-IO tests.
