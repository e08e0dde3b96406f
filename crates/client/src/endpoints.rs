//! The cluster's endpoints as the client knows them: parsing the addresses a caller gives, the
//! order in which a call tries them, and which one to prefer (the leader, once known). No I/O.

use std::sync::Mutex;

use reqwest::Url;

use crate::Error;

/// One node's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http://host:port/`, where every route is joined on.
    pub base: Url,
    /// `host:port`, the form `/cluster/status` advertises members' HTTP addresses in.
    pub authority: String,
}

impl Endpoint {
    /// Accepts `host:port`, `http://host:port` and either with a trailing `/`. There is no TLS,
    /// so `https://` is refused rather than silently downgraded.
    pub fn parse(raw: &str) -> Result<Endpoint, Error> {
        let invalid =
            |reason: &str| Error::InvalidInput { field: "endpoints".into(), reason: format!("`{raw}` {reason}") };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid("is empty"));
        }
        let with_scheme = if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(&format!("is not an address: {e}")))?;
        if url.scheme() != "http" {
            return Err(invalid("must be http:// (lock.io has no TLS)"));
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must be only a host and port"));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = format!("{host}:{port}");
        Ok(Endpoint { base: url, authority })
    }
}

/// Which endpoint a call tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Preference {
    first: usize,
    /// `first` is the leader as `/cluster/status` last named it, not just a node that answered.
    is_leader: bool,
}

/// The configured endpoints and the current preference among them.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    /// A std mutex: held for a few instructions, never across an await.
    preference: Mutex<Preference>,
}

impl Endpoints {
    pub fn parse<I, S>(raw: I) -> Result<Endpoints, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Endpoint> = Vec::new();
        for item in raw {
            let endpoint = Endpoint::parse(item.as_ref())?;
            if !list.contains(&endpoint) {
                list.push(endpoint);
            }
        }
        if list.is_empty() {
            return Err(Error::InvalidInput { field: "endpoints".into(), reason: "no endpoint given".into() });
        }
        Ok(Endpoints { list, preference: Mutex::new(Preference { first: 0, is_leader: false }) })
    }

    pub fn get(&self, index: usize) -> &Endpoint {
        &self.list[index]
    }

    pub fn all(&self) -> &[Endpoint] {
        &self.list
    }

    fn preference(&self) -> Preference {
        *self.preference.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The order of one round of attempts: the preferred endpoint, then the others in the
    /// order they were given.
    pub fn round(&self) -> Vec<usize> {
        rotation(self.list.len(), self.preference().first)
    }

    /// Whether the preferred endpoint is known to be the leader.
    pub fn leader_known(&self) -> bool {
        self.preference().is_leader
    }

    /// `index` answered a call after the preferred one did not: prefer it until the leader is
    /// known again. Returns true when the preference changed.
    pub fn answered(&self, index: usize) -> bool {
        let mut p = self.preference.lock().unwrap_or_else(|p| p.into_inner());
        if p.first == index {
            return false;
        }
        *p = Preference { first: index, is_leader: false };
        true
    }

    /// The preferred endpoint failed (unreachable or 503): whoever it was, it is not a leader
    /// we can use now.
    pub fn failed(&self, index: usize) {
        let mut p = self.preference.lock().unwrap_or_else(|p| p.into_inner());
        if p.first == index {
            p.is_leader = false;
        }
    }

    /// The cluster names its leader's HTTP address (`host:port`); prefer the configured
    /// endpoint with that address, if there is one.
    pub fn leader_is(&self, leader_http: &str) {
        if let Some(index) = self.list.iter().position(|e| e.authority == leader_http) {
            *self.preference.lock().unwrap_or_else(|p| p.into_inner()) = Preference { first: index, is_leader: true };
        }
    }
}

/// `0..len` starting at `first`, wrapping around.
fn rotation(len: usize, first: usize) -> Vec<usize> {
    (0..len).map(|i| (first + i) % len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let ok = [
            ("127.0.0.1:5000", "http://127.0.0.1:5000/", "127.0.0.1:5000"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000/", "127.0.0.1:5000"),
            (" http://localhost:5001/ ", "http://localhost:5001/", "localhost:5001"),
            ("lock-node-2", "http://lock-node-2/", "lock-node-2:80"),
            ("[::1]:5000", "http://[::1]:5000/", "[::1]:5000"),
        ];
        for (raw, base, authority) in ok {
            let e = Endpoint::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!((e.base.as_str(), e.authority.as_str()), (base, authority), "{raw:?}");
        }
        let bad = [
            ("", "is empty"),
            ("https://127.0.0.1:5000", "no TLS"),
            ("127.0.0.1:5000/sessions", "only a host and port"),
            ("127.0.0.1:99999", "is not an address"),
            ("http://", "is not an address"),
        ];
        for (raw, reason) in bad {
            let e = Endpoint::parse(raw).expect_err(raw).to_string();
            assert!(e.contains(reason), "{raw:?}: {e}");
        }
    }

    #[test]
    fn duplicates_collapse_and_an_empty_list_is_refused() {
        let e = Endpoints::parse(["127.0.0.1:5000", "http://127.0.0.1:5000/", "127.0.0.1:5001"]).unwrap();
        assert_eq!(e.all().len(), 2);
        assert!(Endpoints::parse(Vec::<String>::new()).is_err());
    }

    #[test]
    fn rounds_start_at_the_preferred_endpoint() {
        let e = Endpoints::parse(["a:1", "b:1", "c:1"]).unwrap();
        // (event, round after it, leader known after it)
        enum Event {
            Answered(usize),
            Failed(usize),
            Leader(&'static str),
        }
        let script = [
            (Event::Answered(0), vec![0, 1, 2], false),
            (Event::Answered(1), vec![1, 2, 0], false),
            (Event::Leader("c:1"), vec![2, 0, 1], true),
            (Event::Answered(2), vec![2, 0, 1], true),
            (Event::Leader("elsewhere:1"), vec![2, 0, 1], true),
            (Event::Failed(0), vec![2, 0, 1], true),
            (Event::Failed(2), vec![2, 0, 1], false),
            (Event::Answered(0), vec![0, 1, 2], false),
        ];
        for (step, (event, round, leader)) in script.into_iter().enumerate() {
            match event {
                Event::Answered(i) => {
                    e.answered(i);
                }
                Event::Failed(i) => e.failed(i),
                Event::Leader(addr) => e.leader_is(addr),
            }
            assert_eq!((e.round(), e.leader_known()), (round, leader), "step {step}");
        }
    }
}
