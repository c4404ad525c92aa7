//! One module per command family.

pub(crate) mod api;
pub(crate) mod demo;
pub(crate) mod serve;
pub(crate) mod sim;
pub(crate) mod wait;
pub(crate) mod webhook;
