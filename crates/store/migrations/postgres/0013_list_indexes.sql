-- Lists the dashboard and the API page through, at scale: tokens by kind (a run token is made
-- for every attempt, so they outnumber the others by far), workflow runs newest first, and
-- notifications with their deliveries, and events by project and by type.
CREATE INDEX tokens_kind ON tokens(kind, id);
CREATE INDEX workflow_runs_created ON workflow_runs(created_at, id);
CREATE INDEX notifications_created ON notifications(created_at, id);
CREATE INDEX notifications_project ON notifications(project, created_at, id);
CREATE INDEX deliveries_notification ON deliveries(notification_id, id);
CREATE INDEX events_project ON events(project, at, id);
CREATE INDEX events_type ON events(type, at, id);
