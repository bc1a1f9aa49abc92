//! loadgen binary
fn main() {}
