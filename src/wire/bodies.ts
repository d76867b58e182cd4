/** The body of each message kind as the encoders take it (one home, shared by codec.ts and fast.ts). */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ClientMessageSchema, ServerMessageSchema } from './gen/secagg/v1/secagg_pb.js';

export type ClientBody = NonNullable<MessageInitShape<typeof ClientMessageSchema>['body']>;
export type ServerBody = NonNullable<MessageInitShape<typeof ServerMessageSchema>['body']>;
