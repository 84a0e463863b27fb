//! One pipeline for the Redis calls of many requests. The multiplexed connection writes each
//! call as soon as it is queued, and Tokio runs its writer right after the request that woke
//! it, so under load every reservation and settlement cost a `writev` of its own on the
//! gateway and a read on Redis — the gateway's largest cost of metering through Redis. Here
//! the calls queued while the runtime has other requests to run leave together as one
//! pipeline: one write, one read on each side, and still one round trip per call (a pipeline
//! is sent before the previous one is answered).

use std::sync::Arc;

use redis::{Cmd, ErrorKind, Pipeline, RedisResult, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::connection::Connection;

/// The most calls in one pipeline: enough to cover every request a busy replica has in flight
/// at once, small enough that one pipeline's reply stays a few tens of KiB.
const MAX_CALLS: usize = 256;

/// One call: a command and where its reply goes.
struct Call {
    command: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// The scripts' sources, loaded again when Redis has forgotten them (a restart).
pub(super) type Sources = Arc<[String]>;

/// The sending side, cloned into every caller.
#[derive(Clone)]
pub(super) struct Batcher {
    calls: mpsc::UnboundedSender<Call>,
}

impl Batcher {
    /// Starts the batching task on `runtime`.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        connection: Connection,
        sources: Sources,
    ) -> Self {
        let (calls, queued) = mpsc::unbounded_channel();
        runtime.spawn(run(connection, queued, sources));
        Self { calls }
    }

    /// Whether the task is gone (its runtime was shut down): a new one must be started.
    pub(super) fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// Sends `command` with the next pipeline and waits for its reply.
    pub(super) async fn call(&self, command: Cmd) -> RedisResult<Value> {
        let (reply, answer) = oneshot::channel();
        if self.calls.send(Call { command, reply }).is_err() {
            return Err(gone());
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// Sends one command by itself (where no batching task can run), with the same handling of
/// forgotten scripts.
pub(super) async fn call_alone(
    mut connection: Connection,
    command: Cmd,
    sources: &[String],
) -> RedisResult<Value> {
    let (reply, answer) = oneshot::channel();
    send(&mut connection, vec![Call { command, reply }], sources).await;
    answer.await.unwrap_or_else(|_| Err(gone()))
}

fn gone() -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Io, "the redis batching task is gone"))
}

/// Collects the calls queued meanwhile and sends them on their own task, so the next batch is
/// collected while this one waits for its reply.
async fn run(connection: Connection, mut queued: mpsc::UnboundedReceiver<Call>, sources: Sources) {
    while let Some(first) = queued.recv().await {
        // One turn for the requests already runnable: the ones about to call Redis queue their
        // calls meanwhile. With nothing else to run this returns at once.
        tokio::task::yield_now().await;
        let mut waiting = vec![first];
        while let Ok(call) = queued.try_recv() {
            waiting.push(call);
        }
        // A caller that gave up (its timeout) is not sent: a reservation it made is cancelled
        // by its caller, a settlement is sent again in the background (`redeliver`).
        waiting.retain(|call| !call.reply.is_closed());
        while !waiting.is_empty() {
            let batch: Vec<Call> = waiting.drain(..waiting.len().min(MAX_CALLS)).collect();
            let (mut connection, sources) = (connection.clone(), sources.clone());
            tokio::spawn(async move { send(&mut connection, batch, &sources).await });
        }
    }
}

/// Sends one batch and hands every caller its own reply (a call's error is its own; a
/// connection error is everyone's). The calls that found their script missing did not run:
/// the scripts are loaded and those calls sent once more, after the others have their answers.
async fn send(connection: &mut Connection, batch: Vec<Call>, sources: &[String]) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut pipeline = Pipeline::with_capacity(batch.len());
    pipeline.ignore_errors();
    for call in batch {
        pipeline.add_command(call.command);
        replies.push(call.reply);
    }
    let values: Vec<RedisResult<Value>> = match pipeline.query_async(connection).await {
        Ok(values) => values,
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut again = Pipeline::new();
    again.ignore_errors();
    let mut waiting_again = Vec::new();
    for ((reply, value), command) in replies.into_iter().zip(values).zip(commands) {
        if matches!(&value, Err(error) if is_noscript(error)) {
            again.add_command(command.clone());
            waiting_again.push(reply);
        } else {
            // The caller may have given up (its timeout): nobody to tell.
            let _ = reply.send(value);
        }
    }
    if waiting_again.is_empty() {
        return;
    }
    let answers: RedisResult<Vec<RedisResult<Value>>> = match load(connection, sources).await {
        Ok(()) => again.query_async(connection).await,
        Err(error) => Err(error),
    };
    match answers {
        Ok(answers) => {
            for (reply, answer) in waiting_again.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(error) => {
            for reply in waiting_again {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Loads every script, one command each: a cluster sends a `SCRIPT LOAD` to every node, but
/// not from inside a pipeline.
pub(super) async fn load(connection: &mut Connection, sources: &[String]) -> RedisResult<()> {
    for source in sources {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(connection)
            .await?;
    }
    Ok(())
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}
