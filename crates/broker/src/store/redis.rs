//! The Redis backend: one Redis, or a Redis Cluster, shared by every broker node.
//!
//! The connection is made on first use and made again after a failure, so a node starts while
//! Redis is down (answering `/readyz` with 503 and citizens with a clear page) and recovers by
//! itself when Redis returns. A standalone Redis goes through redis-rs's `ConnectionManager`
//! (which reconnects), a Cluster through its cluster connection (which follows slot moves);
//! both clone cheaply, so every request shares one multiplexed connection and no pool is needed.
//! Each operation is one command or one script, so what the Store contract calls atomic is
//! atomic on the server.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, Script};
use tokio::sync::Mutex;

use super::{Counted, Marker, Store, StoreError, Write};

/// Where the Redis is: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone)]
enum Target {
    Single(redis::Client),
    Cluster(Vec<String>),
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisStore {
    target: Target,
    /// The live connection, or none until the next attempt succeeds.
    connection: Mutex<Option<Connection>>,
    take_leaving: Script,
    incr: Script,
}

/// How long a command may take before the node gives up on it (and the citizen gets a page).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl RedisStore {
    /// `urls`: one `redis://host:port[/db]` for a standalone Redis; several (or one
    /// `redis+cluster://host:port`) for the seed nodes of a Redis Cluster. Does not connect yet.
    pub fn new(urls: &[String]) -> Result<Self, StoreError> {
        let target = match urls {
            [] => return Err(unavailable("no Redis URL")),
            [one] if !one.starts_with("redis+cluster://") => {
                Target::Single(redis::Client::open(one.as_str()).map_err(unavailable)?)
            }
            many => Target::Cluster(
                many.iter()
                    .map(|u| u.replacen("redis+cluster://", "redis://", 1))
                    .collect(),
            ),
        };
        Ok(Self {
            target,
            connection: Mutex::new(None),
            // Take KEYS[1] and, if it was there, leave the marker ARGV[1] at KEYS[2] for ARGV[2]
            // ms and move the expiry of every further key to its ARGV (ms): one atomic step.
            take_leaving: Script::new(
                r"local v = redis.call('GETDEL', KEYS[1])
                  if v then
                    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
                    for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[i]) end
                  end
                  return v",
            ),
            // A counter whose expiry starts with its creation; its count and time left.
            incr: Script::new(
                r"local n = redis.call('INCRBY', KEYS[1], ARGV[1])
                  if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
                  return {n, redis.call('PTTL', KEYS[1])}",
            ),
        })
    }

    async fn connect(&self) -> Result<Connection, StoreError> {
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                let manager = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(unavailable)?;
                Ok(Connection::Single(manager))
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2)
                    .build()
                    .map_err(unavailable)?;
                let connection = client.get_async_connection().await.map_err(unavailable)?;
                Ok(Connection::Cluster(connection))
            }
        }
    }

    /// The shared connection, made now if there is none.
    async fn connection(&self) -> Result<Connection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let fresh = self.connect().await?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// After a connection-level failure the next call connects afresh. (The connection manager
    /// reconnects by itself too; a cluster connection that lost every node does not.)
    async fn forget_connection_if(&self, e: &redis::RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.connection.lock().await.take();
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let result = match self.connection().await? {
            Connection::Single(mut c) => cmd.query_async(&mut c).await,
            Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.forget_connection_if(&e).await;
                Err(unavailable(e))
            }
        }
    }

    async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        let result = match self.connection().await? {
            Connection::Single(mut c) => pipe.query_async(&mut c).await,
            Connection::Cluster(mut c) => pipe.query_async(&mut c).await,
        };
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.forget_connection_if(&e).await;
                Err(unavailable(e))
            }
        }
    }

    /// The `take_leaving` script, moving the expiry of `touches` too.
    async fn take_leaving_script(
        &self,
        key: &str,
        marker: &Marker<'_>,
        touches: &[(String, Duration)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let ttls: Vec<String> = std::iter::once(marker.ttl)
            .chain(touches.iter().map(|(_, ttl)| *ttl))
            .map(|ttl| millis(ttl).to_string())
            .collect();
        let mut keys = vec![key, marker.key];
        keys.extend(touches.iter().map(|(k, _)| k.as_str()));
        let mut args = vec![marker.value.as_slice()];
        args.extend(ttls.iter().map(|t| t.as_bytes()));
        self.script(&self.take_leaving, &keys, &args).await
    }

    async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let result = match self.connection().await? {
            Connection::Single(mut c) => invocation.invoke_async(&mut c).await,
            Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        };
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.forget_connection_if(&e).await;
                Err(unavailable(e))
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.query::<()>(&cmd).await
    }

    async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl));
        Ok(self.query::<Option<String>>(&cmd).await?.is_some())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GETDEL").arg(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("DEL").arg(key)).await
    }

    async fn take_leaving(
        &self,
        key: &str,
        marker: Marker<'_>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // Two keys of one hash tag: one script on a Cluster too.
        self.take_leaving_script(key, &marker, &[]).await
    }

    async fn take_leaving_touching(
        &self,
        key: &str,
        marker: Marker<'_>,
        touches: &[(String, Duration)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let Target::Cluster(_) = self.target {
            // The touched keys lie in other slots than the taken one: no script spans them.
            return super::take_then_touch(self, key, marker, touches).await;
        }
        self.take_leaving_script(key, &marker, touches).await
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(key)).await?;
        members.sort();
        Ok(members)
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("SREM").arg(key).arg(member))
            .await
    }

    async fn incr(&self, key: &str, by: u64, ttl: Duration) -> Result<Counted, StoreError> {
        let (by, ms) = (by.to_string(), millis(ttl).to_string());
        let (total, left): (u64, i64) = self
            .script(&self.incr, &[key], &[by.as_bytes(), ms.as_bytes()])
            .await?;
        // PTTL is negative only for a key without expiry, which this script never leaves.
        let left = u64::try_from(left).map_or(ttl, Duration::from_millis);
        Ok(Counted { total, left })
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: i64 = self
            .query(redis::cmd("PEXPIRE").arg(key).arg(millis(ttl)))
            .await?;
        Ok(set == 1)
    }

    async fn write_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        if let Target::Cluster(_) = self.target {
            // A Cluster takes a MULTI only within one slot, and these keys lie in several: each
            // write goes on its own, all of them at once on the shared connection.
            let pipes: Vec<Pipeline> = writes.iter().map(alone).collect();
            futures_util::future::try_join_all(pipes.iter().map(|p| self.pipeline::<()>(p)))
                .await?;
            return Ok(());
        }
        match writes.as_slice() {
            [write] => self.pipeline(&alone(write)).await,
            _ => self.pipeline(&transaction(&writes)).await,
        }
    }

    async fn write_all_then_get(
        &self,
        writes: Vec<Write>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let Target::Cluster(_) = self.target {
            // The key lies in another slot than most of the writes: a read after them.
            self.write_all(writes).await?;
            return self.get(key).await;
        }
        let mut pipe = transaction(&writes);
        pipe.cmd("GET").arg(key);
        let (value,): (Option<Vec<u8>>,) = self.pipeline(&pipe).await?;
        Ok(value)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

/// Every write of a batch in one MULTI/EXEC (a standalone Redis).
fn transaction(writes: &[Write]) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for write in writes {
        push(&mut pipe, write);
    }
    pipe
}

/// One write by itself: in a MULTI where it is two commands (a set and its expiry), bare where
/// it is one, which is atomic without it.
fn alone(write: &Write) -> Pipeline {
    let mut pipe = redis::pipe();
    if let Write::SetAdd { .. } = write {
        pipe.atomic();
    }
    push(&mut pipe, write);
    pipe
}

/// The commands of one write.
fn push(pipe: &mut Pipeline, write: &Write) {
    match write {
        Write::Put { key, value, ttl } => {
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(*ttl))
                .ignore();
        }
        // Inside the MULTI with its PEXPIRE: the set never lingers without an expiry.
        Write::SetAdd { key, member, ttl } => {
            pipe.cmd("SADD")
                .arg(key)
                .arg(member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(key)
                .arg(millis(*ttl))
                .ignore();
        }
        Write::Delete { key } => {
            pipe.cmd("DEL").arg(key).ignore();
        }
        Write::Touch { key, ttl } => {
            pipe.cmd("PEXPIRE").arg(key).arg(millis(*ttl)).ignore();
        }
    }
}
