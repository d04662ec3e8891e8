//! Membership and election state machine (being written).
