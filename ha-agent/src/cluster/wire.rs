//! Heartbeat wire format (being written).
