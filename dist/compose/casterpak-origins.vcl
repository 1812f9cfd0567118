# The two origins of compose.yaml (fixed addresses: Varnish resolves
# backend names once, when it loads the VCL).

backend origin1 {
    .host = "172.28.0.11";
    .port = "8080";
    .probe = casterpak_health;
}

backend origin2 {
    .host = "172.28.0.12";
    .port = "8080";
    .probe = casterpak_health;
}

sub vcl_init {
    origins.add_backend(origin1);
    origins.add_backend(origin2);
}
