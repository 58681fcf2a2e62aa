CREATE TABLE "device_claims" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"device_id" uuid NOT NULL,
	"claimant_id" uuid NOT NULL,
	"binding_id" uuid,
	"status" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"completes_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"outcome" text,
	"claimant_binding_id" uuid
);
--> statement-breakpoint
ALTER TABLE "device_claims" ADD CONSTRAINT "device_claims_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_claims" ADD CONSTRAINT "device_claims_claimant_id_users_id_fk" FOREIGN KEY ("claimant_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_claims" ADD CONSTRAINT "device_claims_binding_id_bindings_id_fk" FOREIGN KEY ("binding_id") REFERENCES "public"."bindings"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_claims" ADD CONSTRAINT "device_claims_claimant_binding_id_bindings_id_fk" FOREIGN KEY ("claimant_binding_id") REFERENCES "public"."bindings"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "device_claims_pending_device_key" ON "device_claims" USING btree ("device_id") WHERE status = 'PENDING';--> statement-breakpoint
CREATE INDEX "device_claims_due_idx" ON "device_claims" USING btree ("completes_at") WHERE status = 'PENDING';--> statement-breakpoint
CREATE INDEX "device_claims_claimant_idx" ON "device_claims" USING btree ("claimant_id","created_at");--> statement-breakpoint
CREATE INDEX "device_claims_binding_idx" ON "device_claims" USING btree ("binding_id");