//! Property tests for every paging mode: the walker against the reference
//! model of tests/model over random multi-root images.

mod model;
