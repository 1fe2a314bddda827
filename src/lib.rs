pub mod bayeux;
