CREATE TABLE "alarm_receipts" (
	"device_id" uuid NOT NULL,
	"key" text NOT NULL,
	"alarm_id" uuid,
	"received_at" timestamp with time zone NOT NULL,
	CONSTRAINT "alarm_receipts_device_id_key_pk" PRIMARY KEY("device_id","key")
);
--> statement-breakpoint
CREATE TABLE "alarms" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"seq" bigserial NOT NULL,
	"xid" bigint DEFAULT (pg_current_xact_id()::text)::bigint NOT NULL,
	"device_id" uuid NOT NULL,
	"binding_id" uuid NOT NULL,
	"source" text NOT NULL,
	"channel" integer NOT NULL,
	"event_type" text NOT NULL,
	"raw_type" text NOT NULL,
	"alarm_type" text NOT NULL,
	"region_id" text,
	"description" text,
	"channel_name" text,
	"started_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"last_post_at" timestamp with time zone NOT NULL,
	"last_post_device_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"active_post_count" integer DEFAULT 0 NOT NULL,
	"post_count" integer DEFAULT 1 NOT NULL,
	"acknowledged_at" timestamp with time zone,
	"acknowledged_by" uuid,
	"details" jsonb
);
--> statement-breakpoint
CREATE TABLE "device_commands" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"device_id" uuid NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"completed_at" timestamp with time zone,
	"ok" boolean,
	"outcome" text
);
--> statement-breakpoint
CREATE TABLE "leases" (
	"name" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "alarm_receipts" ADD CONSTRAINT "alarm_receipts_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "alarms" ADD CONSTRAINT "alarms_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "alarms" ADD CONSTRAINT "alarms_binding_id_bindings_id_fk" FOREIGN KEY ("binding_id") REFERENCES "public"."bindings"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "alarms" ADD CONSTRAINT "alarms_acknowledged_by_users_id_fk" FOREIGN KEY ("acknowledged_by") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_commands" ADD CONSTRAINT "device_commands_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "alarm_receipts_received_idx" ON "alarm_receipts" USING btree ("received_at");--> statement-breakpoint
CREATE UNIQUE INDEX "alarms_seq_key" ON "alarms" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "alarms_order_idx" ON "alarms" USING btree ("xid","seq");--> statement-breakpoint
CREATE INDEX "alarms_binding_order_idx" ON "alarms" USING btree ("binding_id","xid","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "alarms_open_key" ON "alarms" USING btree ("device_id","channel","event_type",coalesce("region_id", '')) WHERE ended_at is null;--> statement-breakpoint
CREATE INDEX "alarms_open_last_post_idx" ON "alarms" USING btree ("last_post_at") WHERE ended_at is null;--> statement-breakpoint
CREATE INDEX "alarms_received_idx" ON "alarms" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "device_commands_pending_idx" ON "device_commands" USING btree ("device_id","created_at") WHERE completed_at is null;