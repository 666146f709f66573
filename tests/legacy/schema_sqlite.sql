CREATE TABLE "mailer_dontsendentry" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "to_address" varchar(254) NOT NULL, "when_added" datetime NOT NULL);
CREATE TABLE "mailer_message" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "message_data" text NOT NULL, "when_added" datetime NOT NULL, "priority" smallint unsigned NOT NULL CHECK ("priority" >= 0), "retry_count" integer NOT NULL);
CREATE TABLE "mailer_messagelog" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "when_added" datetime NOT NULL, "priority" smallint unsigned NOT NULL CHECK ("priority" >= 0), "when_attempted" datetime NOT NULL, "result" varchar(1) NOT NULL, "log_message" text NOT NULL, "message_id" text NULL, "message_data" text NULL);
CREATE INDEX "mailer_messagelog_when_added_627461e6" ON "mailer_messagelog" ("when_added");
CREATE INDEX "mailer_messagelog_priority_5e712cf3" ON "mailer_messagelog" ("priority");
