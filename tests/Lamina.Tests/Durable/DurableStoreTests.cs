using System.Text.Json.Nodes;
using Lamina.Server.Durable;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Tests.Durable;

/// <summary>The durable executions' log on a real SQLite file: what retention deletes, and what it keeps.</summary>
public sealed class DurableStoreTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-durable-" + Guid.NewGuid().ToString("N"));
    private readonly List<DurableStore> _stores = [];

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private DurableStore Open(out List<DurableExecution> loaded)
    {
        var options = Options.Create(new LaminaOptions { DataDirectory = _dataDirectory });
        var store = new DurableStore(options, new Database(options));
        _stores.Add(store);
        loaded = store.Open();
        return store;
    }

    private static DurableExecution Ended(string id)
    {
        var execution = new DurableExecution
        {
            Arn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/" + id,
            FunctionKey = "f",
            FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
            Version = "$LATEST",
            Name = id,
            Input = "{}",
            StartMs = 1000,
            TimeoutSeconds = 300,
            RetentionDays = 1,
            Status = "SUCCEEDED",
            EndMs = 2000,
        };
        execution.Operations.Add(new JsonObject { ["Id"] = "op-" + id, ["Type"] = "EXECUTION" });
        execution.Events.Add(new JsonObject { ["EventType"] = "ExecutionSucceeded" });
        return execution;
    }

    [Fact]
    public void Delete_RemovesTheExecutionsWithTheirOperationsAndEvents_InOneCall_AndKeepsTheOthers()
    {
        var store = Open(out _);
        var executions = new[] { Ended("a"), Ended("b"), Ended("c") };
        foreach (var execution in executions)
        {
            store.Save(execution, execution.Operations, eventsFrom: 0);
        }

        store.Delete([executions[0].Arn, executions[2].Arn]);
        store.Dispose();

        var reopened = Open(out var loaded);
        var kept = Assert.Single(loaded);
        Assert.Equal("b", kept.Name);
        Assert.Single(reopened.ReadEvents(kept.Arn));
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_dataDirectory, "durable.db")};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT (SELECT COUNT(*) FROM operations), (SELECT COUNT(*) FROM events);";
        using var reader = command.ExecuteReader();
        reader.Read();
        Assert.Equal((1L, 1L), (reader.GetInt64(0), reader.GetInt64(1)));
    }

    [Fact]
    public void Open_ReadsARunningExecutionWhole_AndOfAnEndedOneOnlyItsCallbacks()
    {
        var store = Open(out _);
        var running = Ended("r");
        running.Status = "RUNNING";
        running.EndMs = null;
        var ended = Ended("e");
        ended.Operations.Add(new JsonObject
        {
            ["Id"] = "cb", ["Type"] = "CALLBACK", ["Status"] = "TIMED_OUT",
            ["CallbackDetails"] = new JsonObject { ["CallbackId"] = "callback-e" },
        });
        store.Save(running, running.Operations, eventsFrom: 0);
        store.Save(ended, ended.Operations, eventsFrom: 0);
        store.Dispose();

        // An ended execution's history stays in the store (read when asked); its callbacks answer late callers.
        var reopened = Open(out var loaded);
        var r = loaded.Single(static x => x.Name == "r");
        var e = loaded.Single(static x => x.Name == "e");
        Assert.Equal(("op-r", 1), ((string?)r.Operations.Single()["Id"], r.Events.Count));
        Assert.Equal(["cb"], e.Operations.Select(static o => (string?)o["Id"]));
        Assert.Empty(e.Events);
        Assert.Single(reopened.ReadEvents(e.Arn));
    }

    [Fact]
    public void ReadEvents_GivesOneExecutionsHistoryInOrder_AfterAReopen()
    {
        var store = Open(out _);
        var a = Ended("a");
        a.Events.Insert(0, new JsonObject { ["EventType"] = "ExecutionStarted" });
        store.Save(a, a.Operations, eventsFrom: 0);
        var b = Ended("b");
        store.Save(b, b.Operations, eventsFrom: 0);
        store.Dispose();

        var reopened = Open(out _);
        Assert.Equal(["ExecutionStarted", "ExecutionSucceeded"], reopened.ReadEvents(a.Arn).Select(static e => (string?)e["EventType"]));
        Assert.Single(reopened.ReadEvents(b.Arn));
        Assert.Empty(reopened.ReadEvents(a.Arn + "-none"));
    }
}
