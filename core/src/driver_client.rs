//! The half of each driver's `Client` that is only settings, written once for both drivers.

/// Expands, in a driver crate whose `Client` is `{ settings: ClientSettings, transport:
/// Arc<dyn $transport> }` with a `fn tracker_over(&self, core::Tracker) -> Tracker`, the
/// constructors from an API or from settings, the builder methods, the accessors, the ways to
/// start a `Tracker` and a `Debug` that shows the settings (never a secret: `ClientSettings`
/// hides its credentials), so that both drivers offer the same surface from one definition.
#[doc(hidden)]
#[macro_export]
macro_rules! driver_client_settings {
    ($transport:ident) => {
        impl ::std::fmt::Debug for Client {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("Client")
                    .field("settings", &self.settings)
                    .finish_non_exhaustive()
            }
        }

        impl Client {
            /// A client over your own transport (a closure from request to result is one).
            pub fn with_transport(api: $crate::Api, transport: impl $transport + 'static) -> Self {
                let settings = $crate::ClientSettings::new(
                    api,
                    $crate::ClientSettings::seed_from(::std::time::SystemTime::now()),
                );
                Self::with_settings(settings, transport)
            }

            /// A client with every setting given (API, policy, limits, seed, pending-webhook
            /// bounds).
            pub fn with_settings(
                settings: $crate::ClientSettings,
                transport: impl $transport + 'static,
            ) -> Self {
                Self {
                    settings,
                    transport: ::std::sync::Arc::new(transport),
                }
            }

            /// Sets the poll policy (validated when used).
            pub fn with_policy(mut self, policy: $crate::PollPolicy) -> Self {
                self.settings = self.settings.with_policy(policy);
                self
            }

            /// Sets the client-wide limits: requests in flight (the blocking driver's threads
            /// sending, the caller's included), rate limit, progress updates.
            pub fn with_limits(mut self, limits: $crate::SchedulerConfig) -> Self {
                self.settings = self.settings.with_limits(limits);
                self
            }

            /// Sets the jitter seed (for reproducible runs).
            pub fn with_seed(mut self, seed: u64) -> Self {
                self.settings = self.settings.with_seed(seed);
                self
            }

            /// The settings in use.
            pub fn settings(&self) -> &$crate::ClientSettings {
                &self.settings
            }

            /// The policy in use.
            pub fn policy(&self) -> &$crate::PollPolicy {
                &self.settings.policy
            }

            /// Tracks many sessions in one scheduler; take each outcome from
            /// [`Tracker::next_outcome`] as it happens.
            pub fn track_many(
                &self,
                sessions: impl IntoIterator<Item = $crate::SessionId>,
            ) -> Result<Tracker, $crate::ClientError> {
                let mut tracker = self.tracker()?;
                for session in sessions {
                    tracker.add(session)?;
                }
                Ok(tracker)
            }

            /// An empty tracker to add sessions and feed webhooks to.
            pub fn tracker(&self) -> Result<Tracker, $crate::ClientError> {
                Ok(self.tracker_over($crate::Tracker::new(&self.settings)?))
            }

            /// A tracker resumed from a snapshot (see [`Tracker::snapshot`]); the time since it
            /// was taken counts toward each session's max wait.
            pub fn resume(
                &self,
                snapshot: $crate::TrackerSnapshot,
            ) -> Result<Tracker, $crate::SnapshotError> {
                let core = $crate::Tracker::resume_from(
                    &self.settings,
                    snapshot,
                    ::std::time::Instant::now(),
                    ::std::time::SystemTime::now(),
                )?;
                Ok(self.tracker_over(core))
            }
        }
    };
}
