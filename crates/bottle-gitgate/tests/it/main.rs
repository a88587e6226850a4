//! Integration tests of the git gate: real git, real OpenSSH, the gate served in-process.

mod gate;
mod scan;
mod support;
