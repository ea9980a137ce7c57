//! Tokio channel receivers as [`futures::Stream`]s (the wrappers `tokio-stream` provides,
//! without the dependency): request bodies fed from another task, watch signals.

use futures::Stream;
use tokio::sync::mpsc;

/// What `receiver` yields, in order; ends when every sender is gone.
pub fn receiver_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// [`receiver_stream`] for an unbounded channel.
pub fn unbounded_receiver_stream<T: Send + 'static>(
    receiver: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_stream_yields_what_was_sent_and_ends_with_the_senders() {
        let (sender, receiver) = mpsc::channel(4);
        let (unbounded_sender, unbounded) = mpsc::unbounded_channel();
        for item in 1..=3 {
            sender.send(item).await.unwrap();
            unbounded_sender.send(item * 10).unwrap();
        }
        drop((sender, unbounded_sender));
        assert_eq!(
            receiver_stream(receiver).collect::<Vec<_>>().await,
            [1, 2, 3]
        );
        assert_eq!(
            unbounded_receiver_stream(unbounded)
                .collect::<Vec<_>>()
                .await,
            [10, 20, 30]
        );
    }
}
