export { contactOf, contactsOf, DISCARDED_KIND, enqueueMessage, openBody, REMOVED_SECRET, sealedBody, type Channel, type ClaimedMessage, type OutboxMessage, type SecretBox } from './outbox';
export { createDeliveryWorker, retryDelayMs, type DeliveryWorker, type DeliveryWorkerOptions } from './delivery-worker';
export { fileTransport, smsWebhookTransport, smtpTransport, transportsFor, type Transport, type TransportConfig, type Transports } from './transports';
