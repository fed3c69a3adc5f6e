//! How the node's event loop reacts to swarm events: connections, identify, ping,
//! Kademlia query progress and shard protocol messages.
//!
//! Every pending command (request, lookup, join) is completed exactly once: by its
//! answer, by its failure event, or (lookups) by Kademlia's query timeout. Nothing
//! here blocks or touches the disk.

use std::time::Instant;

use libp2p::kad::{self, GetClosestPeersOk, GetProvidersOk, QueryResult};
use libp2p::request_response::{self, Message, OutboundFailure};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identify, ping};

use super::behaviour::{BehaviourEvent, KAD_PROTOCOL};
use super::codec::SHARD_PROTOCOL;
use super::error::MeshError;
use super::node::EventLoop;
use super::wire::{Request, Response, Status};

/// Addresses worth telling Kademlia about: not unspecified, not relayed.
fn dialable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::P2pCircuit => false,
        _ => true,
    })
}

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Shard(e)) => self.on_shard(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let serves = info.protocols.contains(&SHARD_PROTOCOL);
                let listen: Vec<Multiaddr> =
                    info.listen_addrs.into_iter().filter(dialable).collect();
                self.peers
                    .identified(peer_id, &info.agent_version, &listen, serves, now);
                let in_dht = info.protocols.contains(&KAD_PROTOCOL);
                for addr in listen {
                    if in_dht {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => self.peers.rtt(peer, rtt, now),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Limits(v)) => match v {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = endpoint
                    .is_dialer()
                    .then(|| endpoint.get_remote_address().clone());
                self.peers.connected(peer_id, addr, now);
                if let Some(idx) = self
                    .joins
                    .iter()
                    .position(|j| j.pending.contains(&connection_id))
                {
                    self.finish_join(idx);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => self.peers.disconnected(peer_id, num_established, now),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(idx) = self
                    .joins
                    .iter()
                    .position(|j| j.pending.contains(&connection_id))
                {
                    let join = &mut self.joins[idx];
                    join.pending.remove(&connection_id);
                    join.last_error = error.to_string();
                    if join.pending.is_empty() {
                        self.advance_join(idx);
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening on {address}");
            }
            _ => {}
        }
    }

    fn on_shard(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => self.on_inbound(peer, request, channel),
                Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some((_, reply)) = self.requests.remove(&request_id) else {
                    return;
                };
                let err = match error {
                    OutboundFailure::UnsupportedProtocols => {
                        self.peers.not_storage(&peer);
                        MeshError::Refused {
                            peer,
                            request: "shard",
                            status: Status::NotStorage,
                            detail: "the peer does not store shards".into(),
                        }
                    }
                    OutboundFailure::DialFailure => MeshError::CannotConnect { peer },
                    other => MeshError::Unreachable {
                        peer,
                        reason: other.to_string(),
                    },
                };
                let _ = reply.send(Err(err));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound shard request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            QueryResult::GetClosestPeers(result) => {
                let (peers, timed_out) = match result {
                    Ok(GetClosestPeersOk { peers, .. }) => (peers, false),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                for p in &peers {
                    for a in &p.addrs {
                        self.swarm.add_peer_address(p.peer_id, a.clone());
                    }
                }
                if self.announcer.owns(&id) {
                    self.on_announce_walk(id, peers.into_iter().map(|p| p.peer_id).collect());
                    return;
                }
                let Some((storage_only, reply)) = self.closest.remove(&id) else {
                    return;
                };
                let ids: Vec<PeerId> = peers
                    .into_iter()
                    .map(|p| p.peer_id)
                    .filter(|p| !storage_only || !self.peers.known_non_storage(p))
                    .collect();
                let _ = reply.send(if ids.is_empty() && timed_out {
                    Err(MeshError::LookupTimeout("the closest peers".into()))
                } else {
                    Ok(ids)
                });
            }
            QueryResult::GetProviders(result) => {
                let found = match result {
                    Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                        Some(providers.into_iter().collect::<Vec<_>>())
                    }
                    Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => None,
                    Err(_) => None,
                };
                match found {
                    Some(providers) if !providers.is_empty() => {
                        // The first answer is enough to read from: stop the query.
                        if let Some(reply) = self.providers.remove(&id) {
                            let _ = reply.send(Ok(providers));
                        }
                        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            q.finish();
                        }
                    }
                    _ if step.last => {
                        if let Some(reply) = self.providers.remove(&id) {
                            let _ = reply.send(Ok(Vec::new()));
                        }
                    }
                    _ => {}
                }
            }
            QueryResult::Bootstrap(_) => {
                if step.last
                    && let Some(reply) = self.refreshing.remove(&id)
                {
                    let _ = reply.send(Ok(self.swarm.connected_peers().count()));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dialable_addresses_are_kept() {
        assert!(dialable(&"/ip4/127.0.0.1/tcp/4001".parse().unwrap()));
        assert!(dialable(&"/memory/12".parse().unwrap()));
        assert!(!dialable(&"/ip4/0.0.0.0/tcp/4001".parse().unwrap()));
        assert!(!dialable(&"/ip6/::/tcp/4001".parse().unwrap()));
    }
}
