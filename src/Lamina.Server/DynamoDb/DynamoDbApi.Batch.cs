using System.Text.Json;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

internal static partial class DynamoDbApi
{
    private const int MaxBatchWrite = 25;
    private const int MaxBatchGet = 100;
    private const int MaxTransactItems = 100;

    private static async Task BatchGetItemAsync(DynamoCall call)
    {
        var requests = call.Element("RequestItems") is { ValueKind: JsonValueKind.Object } r ? r
            : throw DynamoException.Validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null");
        var work = new List<(TableInfo Table, List<Item> Keys, List<DocumentPath>? Projection, JsonElement Request)>();
        var total = 0;
        foreach (var entry in requests.EnumerateObject())
        {
            var table = call.Store.Require(call.Account, ValidName(entry.Name));
            var keysElement = DynamoCall.Element(entry.Value, "Keys") is { ValueKind: JsonValueKind.Array } k ? k
                : throw DynamoException.Validation("1 validation error detected: Value null at 'requestItems.keys' failed to satisfy constraint: Member must not be null");
            var keys = keysElement.EnumerateArray().Select(e => ParseKey(table, e)).ToList();
            if (keys.Count == 0)
            {
                throw DynamoException.Validation("1 validation error detected: Value at 'requestItems." + entry.Name + ".member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1");
            }
            if (keys.Select(key => Convert.ToBase64String(ItemKey.Of(table, key).Pk) + "/" + Convert.ToBase64String(ItemKey.Of(table, key).Sk)).Distinct().Count() != keys.Count)
            {
                throw DynamoException.Validation("Provided list of item keys contains duplicates");
            }
            total += keys.Count;
            var expressions = DynamoCall.Expressions(entry.Value);
            var projection = ParseProjection(entry.Value, expressions);
            expressions.CheckAllUsed();
            work.Add((table, keys, projection, entry.Value));
        }
        if (total > MaxBatchGet)
        {
            throw DynamoException.Validation("Too many items requested for the BatchGetItem call");
        }
        if (work.Count == 0)
        {
            throw DynamoException.Validation("1 validation error detected: Value '{}' at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1");
        }
        var responses = new List<(string Table, List<Item> Items, double Units)>();
        using (var connection = call.Store.OpenRead())
        using (var snapshot = DynamoStore.Snapshot(connection))
        {
            foreach (var (table, keys, projection, request) in work)
            {
                var items = new List<Item>();
                double units = 0;
                var consistent = DynamoCall.Bool(request, "ConsistentRead") ?? false;
                foreach (var key in keys)
                {
                    if (DynamoStore.ReadItem(connection, table, ItemKey.Of(table, key)) is { } row)
                    {
                        items.Add(projection is null ? row.Item : ExpressionEvaluator.Project(projection, row.Item));
                        units += ReadUnits(row.Size, consistent);
                    }
                }
                responses.Add((table.Name, items, units));
            }
        }
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("Responses");
            foreach (var (table, items, _) in responses)
            {
                w.WriteStartArray(table);
                foreach (var item in items)
                {
                    AttributeValue.WriteMap(w, item);
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("UnprocessedKeys");
            w.WriteEndObject();
            WriteBatchCapacity(w, call, responses.Select(static r => (r.Table, r.Units)));
        });
    }

    private static async Task BatchWriteItemAsync(DynamoCall call)
    {
        var requests = call.Element("RequestItems") is { ValueKind: JsonValueKind.Object } r ? r
            : throw DynamoException.Validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null");
        var writes = new List<(TableInfo Table, ItemKey Key, Item? Put)>();
        foreach (var entry in requests.EnumerateObject())
        {
            var table = call.Store.Require(call.Account, ValidName(entry.Name));
            if (entry.Value.ValueKind != JsonValueKind.Array || entry.Value.GetArrayLength() is 0 or > MaxBatchWrite)
            {
                throw DynamoException.Validation($"1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]");
            }
            foreach (var request in entry.Value.EnumerateArray())
            {
                if (DynamoCall.Element(request, "PutRequest") is { } put)
                {
                    var item = AttributeValue.ParseMap(DynamoCall.Element(put, "Item")
                        ?? throw DynamoException.Validation("1 validation error detected: Value null at 'requestItems.member.putRequest.item' failed to satisfy constraint: Member must not be null"));
                    ValidateItem(table, item);
                    writes.Add((table, ItemKey.Of(table, item), item));
                }
                else if (DynamoCall.Element(request, "DeleteRequest") is { } delete)
                {
                    var key = ParseKey(table, DynamoCall.Element(delete, "Key"));
                    writes.Add((table, ItemKey.Of(table, key), null));
                }
                else
                {
                    throw DynamoException.Validation("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes");
                }
            }
        }
        if (writes.Count is 0 or > MaxBatchWrite)
        {
            throw DynamoException.Validation($"1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]");
        }
        if (writes.Select(static w => (w.Table.Id, Convert.ToBase64String(w.Key.Pk), Convert.ToBase64String(w.Key.Sk))).Distinct().Count() != writes.Count)
        {
            throw DynamoException.Validation("Provided list of item keys contains duplicates");
        }
        var units = await call.Store.WriteAsync(context =>
        {
            var consumed = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (table, key, put) in writes)
            {
                var current = context.Current(table);
                var old = DynamoStore.Get(context, current, key);
                if (put is not null)
                {
                    ValidateItem(current, put);
                    DynamoStore.Put(context, current, key, put, old);
                }
                else if (old is not null)
                {
                    DynamoStore.Delete(context, current, key, old);
                }
                consumed[table.Name] = consumed.GetValueOrDefault(table.Name) + WriteUnits(Math.Max(put is null ? 0 : AttributeValue.ItemSize(put), old is null ? 0 : AttributeValue.ItemSize(old)));
            }
            return consumed;
        }, writes.Select(static w => w.Table));
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("UnprocessedItems");
            w.WriteEndObject();
            WriteBatchCapacity(w, call, units.Select(static u => (u.Key, u.Value)));
        });
    }

    private static void WriteBatchCapacity(Utf8JsonWriter w, DynamoCall call, IEnumerable<(string Table, double Units)> units)
    {
        if (call.String("ReturnConsumedCapacity") is not ("TOTAL" or "INDEXES"))
        {
            return;
        }
        w.WriteStartArray("ConsumedCapacity");
        foreach (var (table, value) in units)
        {
            w.WriteStartObject();
            w.WriteString("TableName", table);
            w.WriteNumber("CapacityUnits", value);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static string ValidName(string name) => DynamoCall.CheckTableName(name, "TableName");

    /// <summary>One action of TransactWriteItems, parsed and checked before anything runs.</summary>
    private sealed record TransactAction(string Kind, TableInfo Table, ItemKey Key, Item KeyOrItem, Condition? Condition, List<UpdateAction>? Update, bool ReturnOnFailure);

    private static async Task TransactWriteItemsAsync(DynamoCall call)
    {
        var items = call.Element("TransactItems") is { ValueKind: JsonValueKind.Array } t ? t
            : throw DynamoException.Validation("1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null");
        if (items.GetArrayLength() is 0 or > MaxTransactItems)
        {
            throw DynamoException.Validation($"1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to {MaxTransactItems}, Member must have length greater than or equal to 1");
        }
        var actions = new List<TransactAction>();
        foreach (var entry in items.EnumerateArray())
        {
            var members = entry.EnumerateObject().Where(static m => m.Value.ValueKind != JsonValueKind.Null).ToList();
            if (members.Count != 1)
            {
                throw DynamoException.Validation("TransactItems can only contain one of Check, Put, Update or Delete");
            }
            var (kind, body) = (members[0].Name, members[0].Value);
            var table = call.TableOf(body);
            var expressions = DynamoCall.Expressions(body);
            var returnOnFailure = DynamoCall.String(body, "ReturnValuesOnConditionCheckFailure") == "ALL_OLD";
            switch (kind)
            {
                case "Put":
                {
                    var item = AttributeValue.ParseMap(DynamoCall.Element(body, "Item")
                        ?? throw DynamoException.Validation("1 validation error detected: Value null at 'transactItems.1.member.put.item' failed to satisfy constraint: Member must not be null"));
                    ValidateItem(table, item);
                    var condition = ParseCondition(body, expressions);
                    expressions.CheckAllUsed();
                    actions.Add(new TransactAction(kind, table, ItemKey.Of(table, item), item, condition, null, returnOnFailure));
                    break;
                }
                case "Delete" or "ConditionCheck":
                {
                    var key = ParseKey(table, DynamoCall.Element(body, "Key"));
                    var condition = ParseCondition(body, expressions);
                    if (kind == "ConditionCheck" && condition is null)
                    {
                        throw DynamoException.Validation("1 validation error detected: Value null at 'transactItems.1.member.conditionCheck.conditionExpression' failed to satisfy constraint: Member must not be null");
                    }
                    expressions.CheckAllUsed();
                    actions.Add(new TransactAction(kind, table, ItemKey.Of(table, key), key, condition, null, returnOnFailure));
                    break;
                }
                case "Update":
                {
                    var key = ParseKey(table, DynamoCall.Element(body, "Key"));
                    var update = ExpressionParser.ParseUpdate(DynamoCall.String(body, "UpdateExpression")
                        ?? throw DynamoException.Validation("1 validation error detected: Value null at 'transactItems.1.member.update.updateExpression' failed to satisfy constraint: Member must not be null"), expressions);
                    var condition = ParseCondition(body, expressions);
                    expressions.CheckAllUsed();
                    CheckUpdatePaths(table, update);
                    actions.Add(new TransactAction(kind, table, ItemKey.Of(table, key), key, condition, update, returnOnFailure));
                    break;
                }
                default:
                    throw new DynamoException("SerializationException", $"Unknown TransactItems member {kind}");
            }
        }
        if (actions.Select(static a => (a.Table.Id, Convert.ToBase64String(a.Key.Pk), Convert.ToBase64String(a.Key.Sk))).Distinct().Count() != actions.Count)
        {
            throw DynamoException.Validation("Transaction request cannot include multiple operations on one item");
        }
        var token = call.String("ClientRequestToken");
        if (token is { Length: 0 or > 36 })
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{token}' at 'clientRequestToken' failed to satisfy constraint: Member must have length less than or equal to 36");
        }
        // The request without its token: what a retry with the same token must repeat exactly.
        var fingerprint = token is null ? null : Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes(call.Request.GetProperty("TransactItems").GetRawText())));
        await RunTransactionAsync(call, actions, token, fingerprint);
        await call.RespondAsync(w => WriteBatchCapacity(w, call, actions.GroupBy(static a => a.Table.Name).Select(static g => (g.Key, 2.0 * g.Count()))));
    }

    /// <summary>
    /// Runs a checked write transaction in one savepoint of the writer: every condition against the state before it,
    /// any failure cancels all of it (TransactionCanceledException with a reason per action), else every action applies.
    /// </summary>
    private static Task<int> RunTransactionAsync(DynamoCall call, List<TransactAction> actions, string? token, string? fingerprint) =>
        call.Store.WriteAsync(context =>
        {
            // 0. A retry of a transaction that committed (same token, same items, within 10 minutes) is answered, not re-run.
            if (token is not null && DynamoStore.CompletedTransaction(context, call.Account, token, context.NowMs) is { } done)
            {
                return done == fingerprint ? 0 : throw new DynamoException("IdempotentParameterMismatchException",
                    "The request uses the same client token as a previous, but non-identical request.");
            }
            // 1. Every condition against the state before the transaction; any failure cancels all of it.
            var tables = actions.Select(a => context.Current(a.Table)).ToList();
            var olds = actions.Select((a, i) => DynamoStore.Get(context, tables[i], a.Key)).ToList();
            var reasons = new List<(string Code, string? Message, Item? Item)>();
            var results = new Item?[actions.Count];
            for (var i = 0; i < actions.Count; i++)
            {
                var action = actions[i];
                var old = olds[i];
                if (action.Condition is not null && !ExpressionEvaluator.Matches(action.Condition, old ?? EmptyItem))
                {
                    reasons.Add(("ConditionalCheckFailed", "The conditional request failed", action.ReturnOnFailure ? old : null));
                    continue;
                }
                try
                {
                    if (action.Kind == "Update")
                    {
                        results[i] = ExpressionEvaluator.ApplyUpdate(action.Update!, old ?? action.KeyOrItem);
                        ValidateItem(tables[i], results[i]!);
                    }
                    reasons.Add(("None", null, null));
                }
                catch (DynamoException e) when (e.Code == "ValidationException")
                {
                    reasons.Add(("ValidationError", e.Message, null));
                }
            }
            if (reasons.Any(static r => r.Code != "None"))
            {
                throw new DynamoException("TransactionCanceledException",
                    $"Transaction cancelled, please refer cancellation reasons for specific reasons [{string.Join(", ", reasons.Select(static r => r.Code))}]")
                {
                    WriteExtra = w =>
                    {
                        w.WriteStartArray("CancellationReasons");
                        foreach (var (code, message, item) in reasons)
                        {
                            w.WriteStartObject();
                            if (item is not null)
                            {
                                WriteItem(w, "Item", item);
                            }
                            w.WriteString("Code", code);
                            if (message is not null)
                            {
                                w.WriteString("Message", message);
                            }
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    },
                };
            }
            // 2. Apply all (one savepoint: all of them commit, or none).
            for (var i = 0; i < actions.Count; i++)
            {
                var action = actions[i];
                switch (action.Kind)
                {
                    case "Put":
                        DynamoStore.Put(context, tables[i], action.Key, action.KeyOrItem, olds[i]);
                        break;
                    case "Update":
                        DynamoStore.Put(context, tables[i], action.Key, results[i]!, olds[i]);
                        break;
                    case "Delete" when olds[i] is not null:
                        DynamoStore.Delete(context, tables[i], action.Key, olds[i]!);
                        break;
                }
            }
            if (token is not null)
            {
                DynamoStore.RememberTransaction(context, call.Account, token, fingerprint!, context.NowMs);
            }
            return 0;
        }, actions.Select(static a => a.Table));

    private static async Task TransactGetItemsAsync(DynamoCall call)
    {
        var items = call.Element("TransactItems") is { ValueKind: JsonValueKind.Array } t ? t
            : throw DynamoException.Validation("1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null");
        if (items.GetArrayLength() is 0 or > MaxTransactItems)
        {
            throw DynamoException.Validation($"1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to {MaxTransactItems}, Member must have length greater than or equal to 1");
        }
        var gets = new List<(TableInfo Table, Item Key, List<DocumentPath>? Projection)>();
        foreach (var entry in items.EnumerateArray())
        {
            var body = DynamoCall.Element(entry, "Get") ?? throw DynamoException.Validation("TransactGetItems members must be Get");
            var table = call.TableOf(body);
            var expressions = DynamoCall.Expressions(body);
            var projection = ParseProjection(body, expressions);
            expressions.CheckAllUsed();
            gets.Add((table, ParseKey(table, DynamoCall.Element(body, "Key")), projection));
        }
        var results = new List<Item?>();
        using (var connection = call.Store.OpenRead())
        using (var snapshot = DynamoStore.Snapshot(connection))
        {
            foreach (var (table, key, projection) in gets)
            {
                var row = DynamoStore.ReadItem(connection, table, ItemKey.Of(table, key));
                results.Add(row is { } found ? projection is null ? found.Item : ExpressionEvaluator.Project(projection, found.Item) : null);
            }
        }
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Responses");
            foreach (var item in results)
            {
                w.WriteStartObject();
                if (item is not null)
                {
                    WriteItem(w, "Item", item);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }
}
