//! One pipeline for the Redis calls of many requests. The multiplexed connection writes each
//! call as soon as it is queued, and Tokio runs its writer right after the request that woke
//! it, so under load every reservation and settlement cost a `writev` of its own on the
//! gateway and a read on Redis — the gateway's largest cost of metering through Redis. Here
//! the calls queued while the runtime has other requests to run leave together as one
//! pipeline: one write, one read on each side, and still one round trip per call (a pipeline
//! is sent before the previous one is answered).

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, Pipeline, RedisResult, Script, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

/// The most calls in one pipeline.
const MAX_CALLS: usize = 256;

/// One call: a command and where its reply goes.
struct Call {
    command: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// The sending side, cloned into every caller.
#[derive(Clone)]
pub(super) struct Batcher {
    calls: mpsc::UnboundedSender<Call>,
}

impl Batcher {
    /// Starts the batching task on the current runtime; `scripts` are loaded again when Redis
    /// has forgotten them (a restart) and the calls that found them missing are sent once more.
    pub(super) fn start(connection: ConnectionManager, scripts: Vec<Script>) -> Self {
        let (calls, queued) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, queued, Arc::from(scripts)));
        Self { calls }
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

fn gone() -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Io, "the redis batching task is gone"))
}

/// Collects the calls queued meanwhile and sends each batch on its own task, so the next batch
/// is collected while this one waits for its reply.
async fn run(
    connection: ConnectionManager,
    mut queued: mpsc::UnboundedReceiver<Call>,
    scripts: Arc<[Script]>,
) {
    while let Some(first) = queued.recv().await {
        // One turn for the requests already runnable: the ones about to call Redis queue their
        // calls meanwhile. With nothing else to run this returns at once.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_CALLS {
            match queued.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        tokio::spawn(send(connection.clone(), batch, scripts.clone()));
    }
}

/// Sends one batch and hands every caller its own reply (a call's error is its own; a
/// connection error is everyone's).
async fn send(mut connection: ConnectionManager, batch: Vec<Call>, scripts: Arc<[Script]>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut pipeline = Pipeline::with_capacity(batch.len());
    pipeline.ignore_errors();
    for call in batch {
        pipeline.add_command(call.command);
        replies.push(call.reply);
    }
    let mut results: RedisResult<Vec<RedisResult<Value>>> =
        pipeline.query_async(&mut connection).await;
    if let Ok(values) = results.as_mut() {
        send_again_if_scripts_were_missing(&mut connection, &pipeline, values, &scripts).await;
    }
    match results {
        Ok(values) => {
            for (reply, value) in replies.into_iter().zip(values) {
                // The caller may have given up (its timeout): nobody to tell.
                let _ = reply.send(value);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Redis forgot the scripts (it restarted): the calls refused for it did not run, so the
/// scripts are loaded and those calls sent once more.
async fn send_again_if_scripts_were_missing(
    connection: &mut ConnectionManager,
    pipeline: &Pipeline,
    values: &mut [RedisResult<Value>],
    scripts: &[Script],
) {
    let missing: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, result)| matches!(result, Err(e) if is_noscript(e)))
        .map(|(index, _)| index)
        .collect();
    if missing.is_empty() {
        return;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut again = Pipeline::with_capacity(missing.len());
    again.ignore_errors();
    for index in &missing {
        again.add_command(commands[*index].clone());
    }
    let answers = match reload(connection, scripts).await {
        Ok(()) => {
            again
                .query_async::<Vec<RedisResult<Value>>>(connection)
                .await
        }
        Err(error) => Err(error),
    };
    match answers {
        Ok(answers) => {
            for (index, answer) in missing.iter().zip(answers) {
                values[*index] = answer;
            }
        }
        Err(error) => {
            for index in &missing {
                values[*index] = Err(error.clone());
            }
        }
    }
}

async fn reload(connection: &mut ConnectionManager, scripts: &[Script]) -> RedisResult<()> {
    for script in scripts {
        script.load_async(connection).await?;
    }
    Ok(())
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}
