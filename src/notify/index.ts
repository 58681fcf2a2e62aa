export { contactOf, contactsOf, enqueueMessage, type Channel, type ClaimedMessage, type OutboxMessage } from './outbox';
export { createDeliveryWorker, retryDelayMs, type DeliveryWorker, type DeliveryWorkerOptions } from './delivery-worker';
export { fileTransport, smsWebhookTransport, smtpTransport, transportsFor, type Transport, type TransportConfig, type Transports } from './transports';
