module spo-rs.local/e2e/node/pause

go 1.26.0
