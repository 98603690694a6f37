//! Application messages for programs built on the ring: what a node's
//! application receives ([`Incoming`], through [`Messages`]) and how it
//! answers a request ([`Responder`]).
//!
//! Delivery is bounded end to end: the inbox holds `NodeBuilder::app_inbox`
//! messages; when it is full (a slow application), or nobody called
//! [`crate::Node::messages`], new messages are refused and their senders
//! get `OpError::Refused` at once. A request nobody answers is refused
//! after half the sender's `kv_timeout`.

use chordal_core::{AppMsgId, NodeRef};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// The application's answer to message `.0`: `Some(payload)` to reply (or
/// accept), `None` to refuse.
pub(crate) type Answer = (AppMsgId, Option<Vec<u8>>);

/// A message for a key this node owns.
#[derive(Debug)]
pub struct Incoming {
    /// The node that sent it.
    pub from: NodeRef,
    /// The key it was sent to (this node owns it); `None` for a message
    /// sent to this node itself ([`crate::Node::send_to`]).
    pub key: Option<Vec<u8>>,
    /// The sender's bytes.
    pub payload: Vec<u8>,
    /// Present for a `request`: answer through it. Dropping it unanswered
    /// refuses the request.
    pub responder: Option<Responder>,
}

impl Incoming {
    /// Answers a request (does nothing for a plain `send`).
    pub fn reply(self, payload: Vec<u8>) {
        if let Some(r) = self.responder {
            r.reply(payload);
        }
    }
}

/// Answers one request, once. Dropped unanswered, it refuses the request.
#[derive(Debug)]
pub struct Responder {
    msg: AppMsgId,
    answers: mpsc::Sender<Answer>,
    answered: bool,
}

impl Responder {
    pub(crate) fn new(msg: AppMsgId, answers: mpsc::Sender<Answer>) -> Responder {
        Responder {
            msg,
            answers,
            answered: false,
        }
    }

    /// Sends `payload` back to the requester.
    pub fn reply(mut self, payload: Vec<u8>) {
        self.answered = true;
        // A full answer queue means the node is swamped: the request then
        // times out at the sender, which is the bounded outcome we want.
        let _ = self.answers.try_send((self.msg, Some(payload)));
    }

    /// Drops the responder without answering (the node answered already).
    pub(crate) fn disarm(mut self) {
        self.answered = true;
    }

    /// Refuses the request now (the sender gets `OpError::Refused`).
    pub fn refuse(mut self) {
        self.answered = true;
        let _ = self.answers.try_send((self.msg, None));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.answers.try_send((self.msg, None));
        }
    }
}

/// The stream of messages for this node's application (see
/// [`crate::Node::messages`]). Also a `futures::Stream`.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Incoming>,
}

impl Messages {
    /// The next message; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Messages {
    type Item = Incoming;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.rx.poll_recv(cx)
    }
}

/// The driver's ends of the application's channels.
pub(crate) struct AppChannels {
    pub shared: std::sync::Arc<AppShared>,
    pub inbox: mpsc::Sender<Incoming>,
}

/// What the node handle and the driver share about the application.
#[derive(Debug)]
pub(crate) struct AppShared {
    /// Has the application taken the inbox (`Node::messages`)?
    pub listening: AtomicBool,
    /// The inbox's receiving side, until the application takes it.
    pub inbox: Mutex<Option<mpsc::Receiver<Incoming>>>,
}

impl AppShared {
    pub(crate) fn take(&self) -> Option<Messages> {
        let rx = self.inbox.lock().ok()?.take()?;
        self.listening
            .store(true, std::sync::atomic::Ordering::Release);
        Some(Messages { rx })
    }
}
