pub mod config;
pub mod conn_id;
pub mod cursor;
pub mod deadline;
pub mod encode;
pub mod http;
pub mod hub;
pub mod json;
pub mod message;
pub mod outq;
pub mod routes;
pub mod server;
pub mod signals;
pub mod stats;

pub use config::Config;
pub use server::{spawn, Server};
