//! Omni's side of the bridge, beyond the triggers it POSTs: its REST API ([`api`],
//! [`messages`]), where it routes an instance ([`binding`]), and its event stream ([`events`],
//! [`trash`], [`reset_consumer`]: 🗑 resets, which Omni never sends to a webhook provider).
//!
//! Data flow of a 🗑: Omni's `message.received` event (NATS JetStream) -> [`reset_consumer`] ->
//! [`binding::routing`] (REST) -> the session reset (the gateway pool) -> [`messages`] (REST)
//! -> the chat.

pub mod api;
pub mod binding;
pub mod events;
pub mod messages;
pub mod reset_consumer;
pub mod trash;
