// The WebSocket constructor for Node tests: Node's own when it has one (Node 22+), else the
// `ws` devDependency (Node 20 has none without a flag). The client itself takes it as an option.

import { WebSocket as WsPackage } from 'ws';

export const WebSocketImpl = globalThis.WebSocket ?? WsPackage;
