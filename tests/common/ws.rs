//! A WebSocket protocol client for tests (`/ws` on the HTTP port).

use std::net::SocketAddr;

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::REPLY_TIMEOUT;

pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    buffer: BytesMut,
    decoder: ReplyDecoder,
    pub text_messages: usize,
}

impl WsClient {
    pub async fn connect(http_addr: SocketAddr) -> WsClient {
        WsClient::connect_to(&format!("ws://{http_addr}/ws")).await
    }

    /// Connects to a WebSocket URL, e.g. with a query (`/ws?readonly=1`).
    pub async fn connect_to(url: &str) -> WsClient {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket handshake");
        WsClient {
            socket,
            buffer: BytesMut::new(),
            decoder: ReplyDecoder::new(),
            text_messages: 0,
        }
    }

    pub async fn send(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next reply, or `None` once the server closed the WebSocket.
    pub async fn reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self.decoder.decode(&mut self.buffer).expect("well-formed") {
                return Some(reply);
            }
            let message = tokio::time::timeout(REPLY_TIMEOUT, self.socket.next())
                .await
                .expect("reply in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    self.text_messages += 1;
                    self.buffer.extend_from_slice(text.as_bytes());
                }
                Some(Ok(Message::Binary(bytes))) => self.buffer.extend_from_slice(&bytes),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }
}
