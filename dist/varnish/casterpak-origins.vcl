# The casterpak origins behind casterpak.vcl (which includes this file):
# one backend each, with the health probe, each added to the `origins`
# shard director. Any origin can answer any URL.

backend origin1 {
    .host = "10.0.0.11";
    .port = "8080";
    .probe = casterpak_health;
}

backend origin2 {
    .host = "10.0.0.12";
    .port = "8080";
    .probe = casterpak_health;
}

sub vcl_init {
    origins.add_backend(origin1);
    origins.add_backend(origin2);
}
