/*
 * migrate.h - the migrations carried in the binary (generated from
 * schemas/sql/NNN_*.sql by broker/embed-sql.sh).
 */
#ifndef BR_MIGRATE_H
#define BR_MIGRATE_H

struct br_migration {
    unsigned version;
    const char *name;
    const char *sql;
};

extern const struct br_migration br_migrations[];
extern const unsigned br_nmigrations;

#endif
