//! The `longpoll` mode.
use crate::args::Args;
pub fn run(_args: &Args) -> Result<(), String> {
    Err("not yet".into())
}
