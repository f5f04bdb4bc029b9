using System.Text.Json;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// BatchExecuteStatement (up to 25 statements, each answered on its own: its item, or its error) and
/// ExecuteTransaction (up to 100 statements, all-or-nothing like TransactWriteItems/TransactGetItems: all reads, or
/// all writes in one SQLite transaction, cancelled as a whole with CancellationReasons).
/// </summary>
internal static partial class DynamoDbApi
{
    private static async Task ExecuteTransactionAsync(DynamoCall call)
    {
        var entries = call.Element("TransactStatements") is { ValueKind: JsonValueKind.Array } t ? t
            : throw DynamoException.Validation("1 validation error detected: Value null at 'transactStatements' failed to satisfy constraint: Member must not be null");
        if (entries.GetArrayLength() is 0 or > MaxTransactItems)
        {
            throw DynamoException.Validation($"1 validation error detected: Value at 'transactStatements' failed to satisfy constraint: Member must have length less than or equal to {MaxTransactItems}, Member must have length greater than or equal to 1");
        }
        var prepared = entries.EnumerateArray().Select(e => Prepare(call, e)).ToList();
        var reads = prepared.Count(static p => p.Statement.Kind == "SELECT");
        if (reads > 0 && reads < prepared.Count)
        {
            throw DynamoException.Validation("Transaction must contain either all read operations or all write operations");
        }
        if (reads > 0)
        {
            var gets = prepared.Select(p => (p.Table, Key: SelectKey(p.Statement, p.Table), p.Statement)).ToList();
            var items = new List<Item?>();
            using (var connection = call.Store.OpenRead())
            using (var snapshot = DynamoStore.Snapshot(connection))
            {
                foreach (var (table, key, statement) in gets)
                {
                    items.Add(ReadSelected(connection, table, key, statement));
                }
            }
            await call.RespondAsync(w => WriteResponses(w, items.Select(static i => (i, (string?)null, (DynamoException?)null))));
            return;
        }
        var actions = prepared.Select(static p => ToAction(p.Statement, p.Table)).ToList();
        if (actions.Select(static a => (a.Table.Id, Convert.ToBase64String(a.Key.Pk), Convert.ToBase64String(a.Key.Sk))).Distinct().Count() != actions.Count)
        {
            throw DynamoException.Validation("Transaction request cannot include multiple operations on one item");
        }
        var token = call.String("ClientRequestToken");
        var fingerprint = token is null ? null : Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes(entries.GetRawText())));
        await RunTransactionAsync(call, actions, token, fingerprint);
        await call.RespondAsync(static w =>
        {
            w.WriteStartArray("Responses");
            w.WriteEndArray();
        });
    }

    private static async Task BatchExecuteStatementAsync(DynamoCall call)
    {
        var entries = call.Element("Statements") is { ValueKind: JsonValueKind.Array } t ? t
            : throw DynamoException.Validation("1 validation error detected: Value null at 'statements' failed to satisfy constraint: Member must not be null");
        if (entries.GetArrayLength() is 0 or > MaxBatchWrite)
        {
            throw DynamoException.Validation("1 validation error detected: Value at 'statements' failed to satisfy constraint: Member must have length less than or equal to 25, Member must have length greater than or equal to 1");
        }
        // Each statement succeeds or fails on its own, as DynamoDB answers them: an Error member in its place.
        var results = new List<(Item? Item, string? Table, DynamoException? Error)>();
        foreach (var entry in entries.EnumerateArray())
        {
            var insert = false;
            try
            {
                var (statement, table) = Prepare(call, entry);
                insert = statement.Kind == "INSERT";
                if (statement.Kind == "SELECT")
                {
                    var key = SelectKey(statement, table);
                    using var connection = call.Store.OpenRead();
                    results.Add((ReadSelected(connection, table, key, statement), table.Name, null));
                }
                else
                {
                    await RunTransactionAsync(call, [ToAction(statement, table)], null, null);
                    results.Add((null, table.Name, null));
                }
            }
            catch (DynamoException e) when (e.Status == 400)
            {
                // BatchStatementError's codes: ConditionalCheckFailed, DuplicateItem, ResourceNotFound, ValidationError, …
                var code = e.Code switch
                {
                    "TransactionCanceledException" when insert => "DuplicateItem",
                    "TransactionCanceledException" or "ConditionalCheckFailedException" => "ConditionalCheckFailed",
                    "DuplicateItemException" => "DuplicateItem",
                    "ResourceNotFoundException" => "ResourceNotFound",
                    _ => "ValidationError",
                };
                var message = code switch
                {
                    "DuplicateItem" => "Duplicate primary key exists in table",
                    "ConditionalCheckFailed" => "The conditional request failed",
                    _ => e.Message,
                };
                results.Add((null, null, new DynamoException(code, message)));
            }
        }
        await call.RespondAsync(w => WriteResponses(w, results));
    }

    private static void WriteResponses(Utf8JsonWriter w, IEnumerable<(Item? Item, string? Table, DynamoException? Error)> results)
    {
        w.WriteStartArray("Responses");
        foreach (var (item, table, error) in results)
        {
            w.WriteStartObject();
            if (error is not null)
            {
                w.WriteStartObject("Error");
                w.WriteString("Code", error.Code);
                w.WriteString("Message", error.Message);
                w.WriteEndObject();
            }
            if (table is not null)
            {
                w.WriteString("TableName", table);
            }
            if (item is not null)
            {
                WriteItem(w, "Item", item);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>A SELECT of a batch or transaction names one item by its whole key (DynamoDB's rule for them).</summary>
    private static Item SelectKey(PartiQLStatement statement, TableInfo table)
    {
        if (statement.Index is not null)
        {
            throw DynamoException.Validation("Batch and transaction reads cannot use an index");
        }
        var expressions = new ExpressionContext(statement.Names, statement.Values);
        var condition = statement.Where is null ? null : ExpressionParser.ParseCondition(statement.Where, "FilterExpression", expressions);
        return KeyFromCondition(table, condition)
            ?? throw DynamoException.Validation("Select statements within BatchExecuteStatement and ExecuteTransaction must specify the full primary key");
    }

    private static Item? ReadSelected(System.Data.Common.DbConnection connection, TableInfo table, Item key, PartiQLStatement statement)
    {
        if (DynamoStore.ReadItem(connection, table, ItemKey.Of(table, key)) is not { } row)
        {
            return null;
        }
        var expressions = new ExpressionContext(statement.Names, statement.Values);
        var condition = ExpressionParser.ParseCondition(statement.Where!, "FilterExpression", expressions);
        var item = row.Item;
        if (!ExpressionEvaluator.Matches(condition, item))
        {
            return null;
        }
        return statement.Projection is null ? item : ExpressionEvaluator.Project(ExpressionParser.ParseProjection(statement.Projection, expressions), item);
    }

    private static (PartiQLStatement Statement, TableInfo Table) Prepare(DynamoCall call, JsonElement entry)
    {
        var text = DynamoCall.String(entry, "Statement")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'statement' failed to satisfy constraint: Member must not be null");
        var parameters = DynamoCall.Element(entry, "Parameters") is { ValueKind: JsonValueKind.Array } p ? p.EnumerateArray().Select(static e => AttributeValue.Parse(e)).ToList() : [];
        var statement = new PartiQLTranslator(text, parameters).Translate();
        return (statement, call.Store.Require(call.Account, statement.Table));
    }

    /// <summary>A write statement as the pieces TransactWriteItems works with.</summary>
    private static TransactAction ToAction(PartiQLStatement statement, TableInfo table)
    {
        if (statement.Kind == "INSERT")
        {
            ValidateItem(table, statement.Item!);
            var notThere = new ExpressionContext(new Dictionary<string, string> { ["#k"] = table.Hash.Name }, null);
            return new TransactAction("Put", table, ItemKey.Of(table, statement.Item!), statement.Item!,
                ExpressionParser.ParseCondition("attribute_not_exists(#k)", "ConditionExpression", notThere), null, false);
        }
        var expressions = new ExpressionContext(statement.Names, statement.Values);
        var condition = statement.Where is null ? null : ExpressionParser.ParseCondition(statement.Where, "ConditionExpression", expressions);
        var key = KeyFromCondition(table, condition)
            ?? throw DynamoException.Validation("Where clause does not contain a mandatory equality on all key attributes");
        var actions = statement.Update is null ? null : ExpressionParser.ParseUpdate(statement.Update, expressions);
        if (actions is not null)
        {
            CheckUpdatePaths(table, actions);
        }
        // UPDATE needs the item: its condition is the WHERE clause (which names the key, so a missing item fails it).
        return new TransactAction(statement.Kind == "UPDATE" ? "Update" : "Delete", table, ItemKey.Of(table, key), key, condition, actions, false);
    }
}
