using Lamina.Server.CloudFormation;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Tests.CloudFormation;

/// <summary>cloudformation.db on a real SQLite file: deleted stacks stay for CloudFormation's 90 days, then go.</summary>
public sealed class StackStoreTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-cfn-" + Guid.NewGuid().ToString("N"));
    private readonly StackStore _store;

    public StackStoreTests()
    {
        var options = Options.Create(new LaminaOptions { DataDirectory = _dataDirectory });
        _store = new StackStore(options, new Database(options));
    }

    public void Dispose()
    {
        _store.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_dataDirectory, recursive: true);
    }

    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static StackRecord Stack(string name) => new()
    {
        StackId = $"arn:aws:cloudformation:us-east-1:000000000000:stack/{name}/{Guid.NewGuid()}",
        StackName = name,
        Status = "CREATE_COMPLETE",
        CreatedAt = Start,
    };

    private StackRecord Delete(StackRecord stack, DateTimeOffset at)
    {
        var deleted = stack with { Status = "DELETE_COMPLETE", DeletedAt = at };
        _store.SaveStack(deleted);
        return deleted;
    }

    [Fact]
    public void DeletedStacks_AreKeptNinetyDays_ThenGoWithWhatTheyHad()
    {
        var old = Stack("old");
        _store.SaveStack(old);
        _store.SaveResource(old.StackId, new ResourceRecord { LogicalId = "Fn", Type = "AWS::Lambda::Function", Status = "CREATE_COMPLETE", UpdatedAt = Start });
        _store.AddEvent(new StackEventRecord("e1", old.StackId, "old", "old", null, "AWS::CloudFormation::Stack", Start, "CREATE_COMPLETE", null, null, null));
        Delete(old, Start);
        var recent = Delete(Stack("recent"), Start + TimeSpan.FromDays(30));
        var live = Stack("live");
        _store.SaveStack(live);

        Delete(Stack("other"), Start + TimeSpan.FromDays(89)); // within 90 days of "old": nothing goes
        Assert.NotNull(_store.FindStack(old.StackId));

        Delete(Stack("later"), Start + StackStore.DeletedStackRetention + TimeSpan.FromDays(1));
        Assert.Null(_store.FindStack(old.StackId));
        Assert.Empty(_store.Resources(old.StackId));
        Assert.Empty(_store.Events(old.StackId, 0, 10));
        Assert.NotNull(_store.FindStack(recent.StackId));
        Assert.NotNull(_store.FindStack("live"));
        Assert.Equal(["later", "live", "other", "recent"], _store.AllStacks().Select(static s => s.StackName).Order(StringComparer.Ordinal));
    }
}
