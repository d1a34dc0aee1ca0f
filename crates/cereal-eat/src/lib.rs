//! cereal-eat (work in progress).
