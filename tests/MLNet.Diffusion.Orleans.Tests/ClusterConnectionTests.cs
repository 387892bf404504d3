using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Messaging;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>Cluster connection strings and the membership provider they give silos and clients (no server needed).</summary>
public sealed class ClusterConnectionTests
{
    [Fact]
    public void Localhost_forms_name_gateway_ports()
    {
        Assert.Equal([ClusterConnection.DefaultGatewayPort], ClusterConnection.Parse("localhost").GatewayPorts);
        var two = ClusterConnection.Parse(" localhost:30001,30002 ");
        Assert.Equal(ClusteringKind.Localhost, two.Kind);
        Assert.Equal([30001, 30002], two.GatewayPorts);
        Assert.Equal(ClusterConnection.DefaultClusterId, two.ClusterId);
    }

    [Fact]
    public void A_redis_string_keeps_its_configuration_for_the_membership_provider()
    {
        var connection = ClusterConnection.Parse("redis://cache1:6379,cache2:6380,password=secret,ssl=true", clusterId: "catalogue");
        Assert.Equal(ClusteringKind.Redis, connection.Kind);
        Assert.Equal("cache1:6379,cache2:6380,password=secret,ssl=true", connection.StoreConnectionString);
        Assert.Equal("catalogue", connection.ClusterId);
        Assert.Empty(connection.GatewayPorts);
    }

    [Theory]
    [InlineData("adonet:Npgsql", "Npgsql")]
    [InlineData("ADONET:microsoft.data.sqlclient", "Microsoft.Data.SqlClient")]
    public void An_adonet_string_names_the_driver_and_takes_the_connection_string(string text, string invariant)
    {
        var connection = ClusterConnection.Parse(text, "Host=db;Database=orleans");
        Assert.Equal(ClusteringKind.AdoNet, connection.Kind);
        Assert.Equal(invariant, connection.Invariant);
        Assert.Equal("Host=db;Database=orleans", connection.StoreConnectionString);
    }

    [Theory]
    [InlineData("mongodb://db", null, "not a cluster connection")]
    [InlineData("redis://", null, "names no Redis server")]
    [InlineData("redis://cache1:6379,notanoption=1", null, "not a Redis configuration")]
    [InlineData("localhost:0", null, "'0' is not a port")]
    [InlineData("localhost:http", null, "'http' is not a port")]
    [InlineData("adonet:Npgsql", null, "--connection-string")]
    [InlineData("adonet:Npgsql", " ", "--connection-string")]
    [InlineData("adonet:MySql.Data.MySqlClient", "Server=db", "adonet:Npgsql")]
    [InlineData("redis://cache1:6379", "Host=db", "takes none")]
    [InlineData("localhost", "Host=db", "takes none")]
    public void A_bad_string_is_refused_with_a_message_that_names_it_and_says_what_is_accepted(string text, string? connectionString, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => ClusterConnection.Parse(text, connectionString));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        if (connectionString is null || expected != "takes none") Assert.Contains(text.Trim(), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cluster_id_with_white_space_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => ClusterConnection.Parse("localhost", clusterId: "my cluster"));
        Assert.Contains("my cluster", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("localhost", null, "SystemTargetBased")] // localhost clustering: the primary silo holds the table
    [InlineData("redis://cache1:6379", null, "Redis")]
    [InlineData("adonet:Npgsql", "Host=db;Database=orleans", "AdoNet")]
    [InlineData("adonet:Microsoft.Data.SqlClient", "Server=db;Database=orleans", "AdoNet")]
    public void A_worker_silo_gets_the_membership_table_of_its_cluster_string(string text, string? connectionString, string provider)
    {
        var options = new WorkerHostOptions { Cluster = ClusterConnection.Parse(text, connectionString, "catalogue"), SiloPort = 11500, GatewayPort = 30500 };
        using var host = WorkerHost.Create(options);

        var table = host.Services.GetRequiredService<IMembershipTable>();
        Assert.Contains(provider, table.GetType().Name, StringComparison.OrdinalIgnoreCase);
        var cluster = host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ClusterOptions>>().Value;
        Assert.Equal("catalogue", cluster.ClusterId);
        var endpoints = host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EndpointOptions>>().Value;
        Assert.Equal((11500, 30500), (endpoints.SiloPort, endpoints.GatewayPort));
    }

    [Theory]
    [InlineData("localhost:30001", null, "Static")]
    [InlineData("redis://cache1:6379", null, "Redis")]
    [InlineData("adonet:Npgsql", "Host=db;Database=orleans", "AdoNet")]
    public void A_client_gets_the_gateway_list_of_its_cluster_string(string text, string? connectionString, string provider)
    {
        var connection = ClusterConnection.Parse(text, connectionString, "catalogue");
        var builder = Host.CreateApplicationBuilder();
        builder.UseOrleansClient(connection.Configure);
        using var host = builder.Build();

        var gateways = host.Services.GetRequiredService<IGatewayListProvider>();
        Assert.Contains(provider, gateways.GetType().Name, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("catalogue", host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ClusterOptions>>().Value.ClusterId);
    }

    [Fact]
    public void A_primary_port_with_redis_clustering_is_refused()
    {
        var options = new WorkerHostOptions { Cluster = ClusterConnection.Parse("redis://cache1:6379"), PrimarySiloPort = 11111 };
        var e = Assert.Throws<ArgumentException>(() => WorkerHost.Create(options));
        Assert.Contains("primary", e.Message, StringComparison.Ordinal);
    }
}
