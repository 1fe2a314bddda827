//! One Bayeux message as the engine reads it, the Bayeux errors it can answer
//! with, and the builder for replies.
//!
//! Fields of the wrong JSON type are read as absent rather than refused: the
//! message then fails the check that needed the field, with that check's
//! error, which is what a client can act on.

use serde_json::{json, Map, Value};

/// The fields of a request message that the engine looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incoming {
    pub channel: String,
    /// Echoed as-is in the reply; clients use strings (CometD "1", Faye "1a").
    pub id: Option<Value>,
    pub client_id: Option<String>,
    pub data: Option<Value>,
    /// `/meta/subscribe` and `/meta/unsubscribe`: one channel or (Faye, after
    /// a re-handshake) an array of channels.
    pub subscription: Vec<String>,
    /// The raw `subscription` field, echoed in the reply as the client sent it.
    pub subscription_raw: Option<Value>,
    pub ext: Option<Map<String, Value>>,
    /// The client's own `advice.timeout` in milliseconds (CometD sends 0 on its first connect).
    pub advice_timeout_ms: Option<u64>,
    pub supported_connection_types: Option<Vec<String>>,
}

impl Incoming {
    /// Reads a message object; `parse_json` guarantees `value` is an object.
    pub fn from_value(value: Value) -> Incoming {
        let Value::Object(mut obj) = value else {
            return Incoming::default();
        };
        let string = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let subscription_raw = obj.remove("subscription");
        let subscription = match &subscription_raw {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let advice_timeout_ms = obj
            .get("advice")
            .and_then(|a| a.get("timeout"))
            .and_then(Value::as_f64)
            .map(|t| t.max(0.0) as u64);
        let supported_connection_types = obj
            .get("supportedConnectionTypes")
            .and_then(Value::as_array)
            .map(|types| {
                types
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            });
        Incoming {
            channel: string(obj.remove("channel")).unwrap_or_default(),
            id: obj.remove("id").filter(|id| !id.is_null()),
            client_id: string(obj.remove("clientId")),
            data: obj.remove("data"),
            subscription,
            subscription_raw,
            ext: match obj.remove("ext") {
                Some(Value::Object(ext)) => Some(ext),
                _ => None,
            },
            advice_timeout_ms,
            supported_connection_types,
        }
    }

    /// `ext.<name>`, when it is present.
    pub fn ext_field(&self, name: &str) -> Option<&Value> {
        self.ext.as_ref()?.get(name)
    }

    /// `ext.halley.<name>`, halley's own namespace (publish token, resume cursor, event name).
    pub fn halley_field(&self, name: &str) -> Option<&Value> {
        self.ext_field("halley")?.get(name)
    }
}

/// A Bayeux error, written `code:args:message` in the reply's `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BayeuxError {
    /// 400: a field the message needs is absent (`400::channel_missing`).
    Missing(&'static str),
    /// 400: the request is understood but not allowed as asked.
    Refused { arg: String, reason: &'static str },
    /// 402: the clientId is unknown or expired; the client must handshake again.
    SessionUnknown,
    /// 403: the session may not do this (publish without the token, subscribe to meta).
    Forbidden { arg: String, reason: &'static str },
    /// 405: the channel name is not one halley can carry.
    ChannelInvalid(String),
    /// 503: the server has no room for this now (`503:/chat:history_full`);
    /// retrying later may succeed.
    Unavailable { arg: String, reason: &'static str },
}

impl BayeuxError {
    pub fn to_wire(&self) -> String {
        match self {
            BayeuxError::Missing(what) => format!("400::{what}"),
            BayeuxError::Refused { arg, reason } => format!("400:{arg}:{reason}"),
            BayeuxError::SessionUnknown => "402::session_unknown".to_string(),
            BayeuxError::Forbidden { arg, reason } => format!("403:{arg}:{reason}"),
            BayeuxError::ChannelInvalid(arg) => format!("405:{arg}:channel_invalid"),
            BayeuxError::Unavailable { arg, reason } => format!("503:{arg}:{reason}"),
        }
    }
}

/// Starts a reply to `msg`: its channel and its id echoed.
pub fn reply_to(msg: &Incoming) -> Map<String, Value> {
    let mut reply = Map::new();
    reply.insert("channel".into(), Value::String(msg.channel.clone()));
    if let Some(id) = &msg.id {
        reply.insert("id".into(), id.clone());
    }
    reply
}

/// The unsuccessful reply to `msg`. A 402 carries `advice: {reconnect: handshake}`,
/// which both CometD and Faye follow by handshaking again on their own.
pub fn error_reply(msg: &Incoming, err: &BayeuxError) -> String {
    let mut reply = reply_to(msg);
    reply.insert("successful".into(), Value::Bool(false));
    reply.insert("error".into(), Value::String(err.to_wire()));
    if let Some(raw) = &msg.subscription_raw {
        reply.insert("subscription".into(), raw.clone());
    }
    if *err == BayeuxError::SessionUnknown {
        reply.insert(
            "advice".into(),
            json!({"reconnect": "handshake", "interval": 0}),
        );
    }
    Value::Object(reply).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_leniently() {
        let cases = [
            (
                json!({"channel": "/a", "id": "7", "clientId": "c", "data": {"x": 1}}),
                "/a",
                Some(json!("7")),
                Some("c"),
                0,
            ),
            (
                json!({"channel": "/meta/subscribe", "subscription": "/a"}),
                "/meta/subscribe",
                None,
                None,
                1,
            ),
            (
                json!({"channel": "/meta/subscribe", "subscription": ["/a", "/b", 3]}),
                "/meta/subscribe",
                None,
                None,
                2,
            ),
            (
                json!({"channel": 5, "clientId": 6, "id": null}),
                "",
                None,
                None,
                0,
            ),
        ];
        for (value, channel, id, client_id, n_subs) in cases {
            let m = Incoming::from_value(value.clone());
            assert_eq!(m.channel, channel, "{value}");
            assert_eq!(m.id, id, "{value}");
            assert_eq!(m.client_id.as_deref(), client_id, "{value}");
            assert_eq!(m.subscription.len(), n_subs, "{value}");
        }
    }

    #[test]
    fn reads_advice_and_ext() {
        let m = Incoming::from_value(json!({
            "channel": "/meta/connect", "advice": {"timeout": 0},
            "ext": {"ack": 3, "halley": {"since": "abc"}}
        }));
        assert_eq!(m.advice_timeout_ms, Some(0));
        assert_eq!(m.ext_field("ack"), Some(&json!(3)));
        assert_eq!(m.halley_field("since"), Some(&json!("abc")));
        assert_eq!(
            Incoming::from_value(json!({"advice": {"timeout": "x"}})).advice_timeout_ms,
            None
        );
    }

    #[test]
    fn errors_in_wire_form() {
        let cases = [
            (
                BayeuxError::Missing("channel_missing"),
                "400::channel_missing",
            ),
            (BayeuxError::SessionUnknown, "402::session_unknown"),
            (
                BayeuxError::Forbidden {
                    arg: "/a".into(),
                    reason: "publish_forbidden",
                },
                "403:/a:publish_forbidden",
            ),
            (
                BayeuxError::ChannelInvalid("/a*".into()),
                "405:/a*:channel_invalid",
            ),
            (
                BayeuxError::Refused {
                    arg: "/a/*".into(),
                    reason: "since_needs_a_channel",
                },
                "400:/a/*:since_needs_a_channel",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_wire(), want);
        }
        let msg = Incoming::from_value(json!({"channel": "/meta/connect", "id": "4"}));
        let reply: Value =
            serde_json::from_str(&error_reply(&msg, &BayeuxError::SessionUnknown)).unwrap();
        assert_eq!(
            reply,
            json!({"channel": "/meta/connect", "id": "4", "successful": false,
                   "error": "402::session_unknown", "advice": {"reconnect": "handshake", "interval": 0}})
        );
    }
}
