//! clutch-unix: the production driver. Not written yet: see issue 3.
