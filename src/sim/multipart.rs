//! Streaming multipart helpers.
