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

    private static DurableExecution Ended(string id, long startMs = 1000, string functionKey = "f")
    {
        var execution = new DurableExecution
        {
            Arn = $"arn:aws:lambda:us-east-1:000000000000:function:{functionKey}:$LATEST/durable-execution/" + id,
            FunctionKey = functionKey,
            FunctionArn = $"arn:aws:lambda:us-east-1:000000000000:function:{functionKey}:$LATEST",
            Version = "$LATEST",
            Name = id,
            Input = "{}",
            StartMs = startMs,
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

        var reopened = Open(out _);
        Assert.Null(reopened.ReadExecution(executions[0].Arn));
        Assert.Null(reopened.ReadExecution(executions[2].Arn));
        var kept = reopened.ReadExecution(executions[1].Arn)!;
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
    public void Open_ReadsOnlyTheRunningExecutions_AndAnEndedOneIsReadFromTheStoreWhenAskedFor()
    {
        var store = Open(out _);
        var running = Ended("r");
        running.Status = "RUNNING";
        running.EndMs = null;
        var ended = Ended("e");
        ended.Result = "42";
        ended.Operations.Add(new JsonObject
        {
            ["Id"] = "cb", ["Type"] = "CALLBACK", ["Status"] = "TIMED_OUT",
            ["CallbackDetails"] = new JsonObject { ["CallbackId"] = "callback-e" },
        });
        running.Operations.Add(new JsonObject
        {
            ["Id"] = "cb-r", ["Type"] = "CALLBACK", ["Status"] = "STARTED",
            ["CallbackDetails"] = new JsonObject { ["CallbackId"] = "callback-r" },
        });
        store.Save(running, running.Operations, eventsFrom: 0);
        store.Save(ended, ended.Operations, eventsFrom: 0);
        store.Dispose();

        var reopened = Open(out var loaded);
        var r = Assert.Single(loaded);
        Assert.Equal(("r", 2, 1), (r.Name, r.Operations.Count, r.Events.Count));

        // The ended one: its record (done, without operations and events), by ARN and by name; its callback; its history.
        var e = reopened.ReadExecution(ended.Arn)!;
        Assert.Equal(("SUCCEEDED", "42", 2000L, "{}"), (e.Status, e.Result, e.EndMs, e.Input));
        Assert.True(e.Done.Task.IsCompletedSuccessfully);
        Assert.Empty(e.Operations);
        Assert.Equal(ended.Arn, reopened.ReadExecutionByName("f", "e")?.Arn);
        Assert.Null(reopened.ReadExecutionByName("g", "e"));
        Assert.Null(reopened.ReadExecution(ended.Arn + "-none"));
        Assert.Equal(("SUCCEEDED", true), reopened.ReadCallback("callback-e"));
        Assert.Equal(("RUNNING", false), reopened.ReadCallback("callback-r"));
        Assert.Null(reopened.ReadCallback("callback-none"));
        Assert.Single(reopened.ReadEvents(e.Arn));
    }

    [Fact]
    public void ListExecutions_PagesByStartThenArn_FromWhereTheLastPageEnded_WithItsFilters()
    {
        var store = Open(out _);
        var all = new List<DurableExecution>();
        for (var i = 0; i < 7; i++)
        {
            var execution = Ended("x" + i, startMs: 1000 + i / 2); // two per millisecond: the ARN orders them
            execution.Status = i % 3 == 0 ? "FAILED" : "SUCCEEDED";
            store.Save(execution, execution.Operations, eventsFrom: 0);
            all.Add(execution);
        }
        var other = Ended("y", functionKey: "g");
        store.Save(other, other.Operations, eventsFrom: 0);

        List<string> Walk(ExecutionFilter filter, bool newestFirst)
        {
            var names = new List<string>();
            (long, string)? after = null;
            while (true)
            {
                var page = store.ListExecutions("f", filter, newestFirst, after, take: 3);
                names.AddRange(page.Select(static e => e.Name));
                if (page.Count < 3)
                {
                    return names;
                }
                after = (page[^1].StartMs, page[^1].Arn);
            }
        }

        var none = new ExecutionFilter(null, null, null, null, null);
        Assert.Equal(all.Select(static e => e.Name), Walk(none, newestFirst: false));
        Assert.Equal(all.Select(static e => e.Name).Reverse(), Walk(none, newestFirst: true));
        Assert.Equal(["x0", "x3", "x6"], Walk(none with { Statuses = ["FAILED"] }, newestFirst: false));
        Assert.Equal(["x2", "x3", "x4", "x5"], Walk(none with { StartedAfterMs = 1001, StartedBeforeMs = 1002 }, newestFirst: false));
        Assert.Equal(["x5"], Walk(none with { Name = "x5", Version = "$LATEST" }, newestFirst: false));
        Assert.Empty(Walk(none with { Version = "3" }, newestFirst: false));

        // A page starts after the last one listed, whatever started meanwhile.
        var first = store.ListExecutions("f", none, newestFirst: false, after: null, take: 3);
        var late = Ended("a-late", startMs: 999); // before every one listed: an offset would shift the next page
        store.Save(late, late.Operations, eventsFrom: 0);
        var second = store.ListExecutions("f", none, newestFirst: false, after: (first[^1].StartMs, first[^1].Arn), take: 3);
        Assert.Equal(["x3", "x4", "x5"], second.Select(static e => e.Name));
    }

    [Fact]
    public void ReadExpired_GivesTheEndedExecutionsPastTheirRetention_OldestFirst_UpToTheLimit()
    {
        var store = Open(out _);
        const long day = 86_400_000;
        (string Name, long EndMs, int RetentionDays, string Status)[] rows =
        [
            ("a", 10 * day, 1, "SUCCEEDED"), // out at 11 days
            ("b", 1 * day, 14, "FAILED"),    // out at 15 days
            ("c", 5 * day, 2, "STOPPED"),    // out at 7 days
            ("d", 11 * day, 1, "SUCCEEDED"), // out at 12 days
        ];
        foreach (var (name, endMs, retention, status) in rows)
        {
            var execution = new DurableExecution
            {
                Arn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/" + name,
                FunctionKey = "f", FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST", Version = "$LATEST",
                Name = name, Input = "{}", StartMs = 0, TimeoutSeconds = 300, RetentionDays = retention, Status = status, EndMs = endMs,
            };
            store.Save(execution, [], eventsFrom: 0);
        }
        var running = Ended("r");
        running.Status = "RUNNING";
        running.EndMs = null;
        store.Save(running, running.Operations, eventsFrom: 0);

        Assert.Equal(["c", "a"], store.ReadExpired(12 * day, take: 10).Select(static arn => arn[(arn.LastIndexOf('/') + 1)..]));
        Assert.Equal(["c"], store.ReadExpired(12 * day, take: 1).Select(static arn => arn[(arn.LastIndexOf('/') + 1)..]));
        Assert.Equal(4, store.ReadExpired(16 * day, take: 10).Count);
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
