export { encodeControl, decodeControl, isControlFrame, CONTROL_PREFIX, MAX_CONTROL_BYTES, MAX_ASSIGNMENT_BYTES, CLOSE, TransportError, type ControlBody, type CloseCode } from './frames.js';
export { openChannel, OPEN, type WebSocketLike, type WebSocketConstructor, type FrameChannel } from './socket.js';
