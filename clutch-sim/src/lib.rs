//! clutch-sim: the deterministic simulator. Not written yet: see issue 4.
