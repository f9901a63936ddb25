-- A second database in the postgres profile's server: Prefect's (the registry uses `lenscal`).
CREATE DATABASE prefect OWNER lenscal;
