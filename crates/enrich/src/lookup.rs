//! Resolving a user's profile: the shared cache first, then consent, then one Graph call per
//! (account, user) in flight however many events ask at once: in this process through one shared
//! future, across replicas through a claim in the bucket (the claimant calls, the others wait for
//! its answer in the cache). The call runs in its own task, so an event that stops waiting at its
//! deadline does not cancel it: the answer still fills the cache for the events that follow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use igrelay_accounts::AccountStore;
use igrelay_core::v1::{AccountStatus, LoginType, NotEnrichedReason, UserProfile};
use igrelay_graph::{AccessToken, AccountAuth, ErrorClass, GraphClient, GraphError, Usage};

use crate::EnrichConfig;
use crate::cache::{Cached, ProfileCache, WriteGuard};
use crate::metrics::Metrics;

/// The answer for one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Profile { profile: UserProfile, from_cache: bool },
    Not { reason: NotEnrichedReason, detail: String },
}

impl Resolved {
    fn not(reason: NotEnrichedReason, detail: impl Into<String>) -> Self {
        Self::Not { reason, detail: detail.into() }
    }
}

type Flight = Shared<BoxFuture<'static, Resolved>>;

/// How long a replica's claim on a user's look-up holds others back (its owner may have died).
const CLAIM_LEASE: Duration = Duration::from_secs(15);

/// Per-account admission: a token bucket of `lookups_per_s`, and pauses asked for by Meta
/// (throttling, usage headers) or by a refused token.
#[derive(Debug)]
struct Gate {
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    pause_reason: NotEnrichedReason,
    pause_detail: String,
}

pub struct Profiles {
    cfg: Arc<EnrichConfig>,
    graph: GraphClient,
    accounts: AccountStore,
    pub(crate) cache: ProfileCache,
    metrics: Metrics,
    inflight: Mutex<HashMap<(String, String), Flight>>,
    gates: Mutex<HashMap<String, Gate>>,
    /// Users forgotten recently: a look-up that started before must not write their profile
    /// back into the cache.
    forgotten: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles").finish_non_exhaustive()
    }
}

impl Profiles {
    pub fn new(
        cfg: Arc<EnrichConfig>,
        graph: GraphClient,
        accounts: AccountStore,
        cache: ProfileCache,
        metrics: Metrics,
    ) -> Self {
        Self {
            cfg,
            graph,
            accounts,
            cache,
            metrics,
            inflight: Mutex::default(),
            gates: Mutex::default(),
            forgotten: Mutex::default(),
        }
    }

    /// The profile of `igsid` as seen by `account`. `gives_consent`: the event at hand is one
    /// that gives consent (a message, an ice breaker or menu tap), so it is recorded and the
    /// user may be looked up. `refresh` skips the cached entry.
    pub async fn resolve(
        self: &Arc<Self>,
        account: &str,
        igsid: &str,
        gives_consent: bool,
        event_id: &str,
        refresh: bool,
    ) -> Resolved {
        if !refresh {
            match self.cache.get(account, igsid).await {
                Ok(Some(Cached::Profile(profile))) => {
                    Metrics::count(&self.metrics.cache, "hit");
                    return Resolved::Profile { profile, from_cache: true };
                }
                Ok(Some(Cached::Refused { reason, detail })) => {
                    Metrics::count(&self.metrics.cache, "refusal");
                    return Resolved::Not { reason, detail };
                }
                Ok(None) => Metrics::count(&self.metrics.cache, "miss"),
                Err(e) => {
                    // A cache outage costs Graph calls, not events.
                    Metrics::count(&self.metrics.cache, "error");
                    tracing::warn!(error = %e, "profile cache unreadable; looking up");
                }
            }
        }
        if gives_consent {
            if let Err(e) = self.cache.put_consent(account, igsid, event_id).await {
                tracing::warn!(error = %e, "cannot record consent");
            }
        } else {
            match self.cache.has_consent(account, igsid).await {
                Ok(true) => {}
                Ok(false) => {
                    return Resolved::not(
                        NotEnrichedReason::NoConsent,
                        "no message, ice breaker or menu tap from this user seen yet",
                    );
                }
                Err(e) => {
                    return Resolved::not(NotEnrichedReason::LookupFailed, format!("consent unreadable: {e}"));
                }
            }
        }
        self.lookup(account, igsid, refresh).await
    }

    /// Joins the look-up in flight for this user, or starts one.
    fn lookup(self: &Arc<Self>, account: &str, igsid: &str, refresh: bool) -> Flight {
        let key = (account.to_owned(), igsid.to_owned());
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = inflight.get(&key) {
            return f.clone();
        }
        let this = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let r = this.fetch(&task_key.0, &task_key.1, refresh).await;
            // Removed only after the cache was written, so a later event finds one or the other.
            this.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
            r
        });
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Resolved::not(NotEnrichedReason::LookupFailed, format!("look-up task failed: {e}")))
        }
        .boxed()
        .shared();
        inflight.insert(key, flight.clone());
        flight
    }

    /// One look-up across replicas: the replica that claims the user calls the Graph API, the
    /// others wait for its answer in the shared cache.
    async fn fetch(&self, account: &str, igsid: &str, refresh: bool) -> Resolved {
        match self.cache.claim(account, igsid, CLAIM_LEASE).await {
            Ok(true) => {
                // Another replica may have cached its answer and released its claim between our
                // cache miss and this claim.
                if !refresh && let Some(r) = self.cached(account, igsid).await {
                    self.cache.release(account, igsid).await;
                    return r;
                }
                let r = self.call(account, igsid).await;
                self.cache.release(account, igsid).await;
                r
            }
            Ok(false) => {
                let until = Instant::now() + CLAIM_LEASE;
                loop {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    if let Some(r) = self.cached(account, igsid).await {
                        return r;
                    }
                    if Instant::now() > until || !self.cache.claimed(account, igsid, CLAIM_LEASE).await.unwrap_or(false)
                    {
                        // The claimant caches its answer before releasing the claim, so the
                        // answer may have landed between the two reads above: look once more.
                        // Still nothing: it failed without caching (transient) or died.
                        if let Some(r) = self.cached(account, igsid).await {
                            return r;
                        }
                        return self.call(account, igsid).await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the look-up; calling anyway");
                self.call(account, igsid).await
            }
        }
    }

    /// The shared cache's answer for the user, if it has one.
    async fn cached(&self, account: &str, igsid: &str) -> Option<Resolved> {
        match self.cache.get(account, igsid).await {
            Ok(Some(Cached::Profile(profile))) => Some(Resolved::Profile { profile, from_cache: true }),
            Ok(Some(Cached::Refused { reason, detail })) => Some(Resolved::Not { reason, detail }),
            _ => None,
        }
    }

    async fn call(&self, account: &str, igsid: &str) -> Resolved {
        let started = Instant::now();
        // Before Meta is asked: a forget on any replica from now on keeps the answer out of
        // the cache. Unreadable: the answer is not cached at all.
        let guard = match self.cache.guard(account, igsid).await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "profile cache unreadable; the answer will not be cached");
                None
            }
        };
        if let Err((reason, detail)) = self.admit(account) {
            Metrics::count(&self.metrics.lookups, "not_admitted");
            return Resolved::Not { reason, detail };
        }
        let auth = match self.accounts.credentials(account).await {
            Ok(Some((acct, _))) if acct.status == AccountStatus::NeedsReauth as i32 => {
                return Resolved::not(NotEnrichedReason::AccountUnavailable, "the account needs re-authorisation");
            }
            Ok(Some((acct, token))) => {
                let token = AccessToken::new(token.expose());
                if acct.login_type == LoginType::Facebook as i32 {
                    AccountAuth::facebook(token)
                } else {
                    AccountAuth::instagram(token)
                }
            }
            Ok(None) => {
                return Resolved::not(NotEnrichedReason::AccountUnavailable, "the account is not registered");
            }
            Err(e) => return Resolved::not(NotEnrichedReason::AccountUnavailable, e.to_string()),
        };
        let mut attempt = 0u32;
        let result = loop {
            match self.graph.user_profile(&auth, igsid).await {
                Err(e) if e.class() == ErrorClass::Transient && attempt < self.cfg.lookup_retries => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "transient profile look-up failure; retrying");
                    tokio::time::sleep(Duration::from_millis(50u64 << attempt.min(6))).await;
                }
                r => break r,
            }
        };
        match result {
            Ok(resp) => {
                self.observe_usage(account, &resp.usage);
                let p = resp.value;
                let profile = UserProfile {
                    igsid: igsid.to_owned(),
                    account_id: account.to_owned(),
                    name: p.name.unwrap_or_default(),
                    username: p.username.unwrap_or_default(),
                    profile_pic: p.profile_pic.unwrap_or_default(),
                    follower_count: p.follower_count,
                    is_user_follow_business: p.is_user_follow_business,
                    is_business_follow_user: p.is_business_follow_user,
                    is_verified_user: p.is_verified_user,
                    fetched_time: Some(igrelay_core::time::now()),
                };
                Metrics::count(&self.metrics.lookups, "ok");
                if !self.forgotten_since(igsid, started)
                    && let Some(guard) = guard
                {
                    match self.cache.put_profile(&profile, self.cfg.cache_ttl, guard).await {
                        Ok(true) => {}
                        Ok(false) => tracing::info!("user forgotten (or re-cached) during the look-up; not cached"),
                        Err(e) => tracing::warn!(error = %e, "cannot cache profile"),
                    }
                }
                Resolved::Profile { profile, from_cache: false }
            }
            Err(e) => self.failed(account, igsid, &e, started, guard).await,
        }
    }

    async fn failed(
        &self,
        account: &str,
        igsid: &str,
        e: &GraphError,
        started: Instant,
        guard: Option<WriteGuard>,
    ) -> Resolved {
        if let Some(usage) = e.usage() {
            self.observe_usage(account, usage);
        }
        let detail = e.to_string();
        let (reason, remember, outcome) = match (e.code(), e.class()) {
            (Some((230, _)), _) => (NotEnrichedReason::ConsentRequired, true, "consent_required"),
            // Blocked users are invisible; unknown ones likewise (100/33, 200/1545041, 551).
            (Some((100, Some(33) | Some(2018001))), _)
            | (Some((200..=299, Some(1545041))), _)
            | (Some((551, _)), _) => (NotEnrichedReason::UserUnavailable, true, "user_unavailable"),
            (_, ErrorClass::Throttled { retry_after }) => {
                self.pause(account, retry_after, NotEnrichedReason::Throttled, &detail);
                (NotEnrichedReason::Throttled, false, "throttled")
            }
            (_, ErrorClass::Auth) => {
                self.pause(account, self.cfg.auth_pause, NotEnrichedReason::AccountUnavailable, &detail);
                (NotEnrichedReason::AccountUnavailable, false, "auth")
            }
            (_, ErrorClass::Transient) => (NotEnrichedReason::LookupFailed, false, "transient"),
            (_, ErrorClass::Permanent) => (NotEnrichedReason::LookupFailed, true, "permanent"),
        };
        Metrics::count(&self.metrics.lookups, outcome);
        tracing::info!(%account, reason = reason.as_str_name(), error = %e, "profile look-up refused");
        if remember
            && !self.forgotten_since(igsid, started)
            && let Some(guard) = guard
            && let Err(err) =
                self.cache.put_refusal(account, igsid, reason, &detail, self.cfg.negative_ttl, guard).await
        {
            tracing::warn!(error = %err, "cannot remember refusal");
        }
        Resolved::Not { reason, detail }
    }

    fn admit(&self, account: &str) -> Result<(), (NotEnrichedReason, String)> {
        let rate = f64::from(self.cfg.lookups_per_s);
        let now = Instant::now();
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let g = gates.entry(account.to_owned()).or_insert_with(|| Gate {
            tokens: rate,
            refilled: now,
            paused_until: None,
            pause_reason: NotEnrichedReason::Throttled,
            pause_detail: String::new(),
        });
        if let Some(until) = g.paused_until {
            if until > now {
                return Err((g.pause_reason, format!("look-ups paused: {}", g.pause_detail)));
            }
            g.paused_until = None;
        }
        g.tokens = (g.tokens + now.duration_since(g.refilled).as_secs_f64() * rate).min(rate);
        g.refilled = now;
        if g.tokens < 1.0 {
            return Err((
                NotEnrichedReason::Throttled,
                format!("enrich.lookups_per_s ({}) reached for this account", self.cfg.lookups_per_s),
            ));
        }
        g.tokens -= 1.0;
        Ok(())
    }

    fn pause(&self, account: &str, wait: Duration, reason: NotEnrichedReason, detail: &str) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let g = gates.entry(account.to_owned()).or_insert_with(|| Gate {
            tokens: 0.0,
            refilled: now,
            paused_until: None,
            pause_reason: reason,
            pause_detail: String::new(),
        });
        let until = now + wait;
        if g.paused_until.is_none_or(|u| u < until) {
            g.paused_until = Some(until);
            g.pause_reason = reason;
            g.pause_detail = detail.to_owned();
        }
        tracing::warn!(%account, wait_ms = wait.as_millis() as u64, reason = reason.as_str_name(), "profile look-ups paused");
    }

    /// Meta's usage headers near the limit: pause before Meta starts refusing.
    fn observe_usage(&self, account: &str, usage: &Usage) {
        let percent = usage.max_percent();
        if percent >= self.cfg.usage_pause_percent {
            let wait = usage.regain_access_in().unwrap_or(self.cfg.usage_pause);
            self.pause(
                account,
                wait,
                NotEnrichedReason::Throttled,
                &format!("Meta reports {percent}% of a budget used"),
            );
        }
    }

    /// Marks a user forgotten, so look-ups already running do not cache them again.
    pub fn forget(&self, igsid: &str) {
        let now = Instant::now();
        let mut f = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|_, at| now.duration_since(*at) < Duration::from_secs(600));
        f.insert(igsid.to_owned(), now);
    }

    fn forgotten_since(&self, igsid: &str, started: Instant) -> bool {
        self.forgotten.lock().unwrap_or_else(|p| p.into_inner()).get(igsid).is_some_and(|at| *at >= started)
    }
}
