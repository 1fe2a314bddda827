pub mod conn_id;
pub mod cursor;
pub mod encode;
pub mod http;
pub mod hub;
pub mod json;
pub mod message;
