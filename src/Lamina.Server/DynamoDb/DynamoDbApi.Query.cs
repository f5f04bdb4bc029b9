using System.Text.Json;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

internal static partial class DynamoDbApi
{
    /// <summary>A Query or Scan page stops once it has read this much (before filtering), as DynamoDB's does.</summary>
    private const int PageBytes = 1024 * 1024;

    private static async Task QueryAsync(DynamoCall call)
    {
        RefuseLegacy(call, "KeyConditions", "QueryFilter", "ConditionalOperator");
        var table = call.Table();
        var index = IndexOf(call, table);
        var expressions = DynamoCall.Expressions(call.Request);
        var keyText = call.String("KeyConditionExpression")
            ?? throw DynamoException.Validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.");
        var keyCondition = ExpressionParser.ParseCondition(keyText, "KeyConditionExpression", expressions);
        var filter = ParseCondition(call.Request, expressions, "FilterExpression");
        var projection = ParseProjection(call.Request, expressions);
        expressions.CheckAllUsed();
        var hash = index?.Hash ?? table.Hash;
        var range = index is null ? table.Range : index.Range;
        var (hashValue, sortRange) = KeyConditions(keyCondition, hash, range);
        if (filter is not null)
        {
            CheckFilterKeys(filter, hash, range);
        }
        var select = SelectOf(call, index, projection);
        var limit = LimitOf(call);
        var forward = call.Bool("ScanIndexForward") ?? true;
        var consistent = call.Bool("ConsistentRead") ?? false;
        if (consistent && index is { Global: true })
        {
            throw DynamoException.Validation("Consistent reads are not supported on global secondary indexes");
        }
        var pk = ItemKey.Encode(hashValue);
        Item? start = call.Element("ExclusiveStartKey") is { } startElement ? ParseStartKey(table, index, startElement) : null;
        if (start is not null && !start[hash.Name].Equals(hashValue))
        {
            throw DynamoException.Validation("The provided starting key is invalid: The provided key element does not match the schema");
        }
        using var connection = call.Store.OpenRead();
        using var snapshot = DynamoStore.Snapshot(connection);
        IEnumerable<ItemRow> rows;
        if (index is null)
        {
            var startSk = start is null ? null : table.Range is { } r ? ItemKey.Encode(start[r.Name]) : null;
            if (start is not null && table.Range is null)
            {
                rows = []; // a partition of a table without sort key has one item: the start key was it
            }
            else
            {
                rows = DynamoStore.QueryTable(connection, table, pk, sortRange, forward, startSk);
            }
        }
        else
        {
            (byte[], ItemKey)? startAt = start is null ? null : (index.Range is { } ir ? ItemKey.Encode(start[ir.Name]) : [], ItemKey.Of(table, start));
            rows = DynamoStore.QueryIndex(connection, table, index, pk, sortRange, forward, startAt);
        }
        var page = ReadPage(rows, table, index, filter, projection, select, limit, consistent);
        await WritePageAsync(call, table, index, page, select);
    }

    private static async Task ScanAsync(DynamoCall call)
    {
        RefuseLegacy(call, "ScanFilter", "ConditionalOperator");
        var table = call.Table();
        var index = IndexOf(call, table);
        var expressions = DynamoCall.Expressions(call.Request);
        var filter = ParseCondition(call.Request, expressions, "FilterExpression");
        var projection = ParseProjection(call.Request, expressions);
        expressions.CheckAllUsed();
        var select = SelectOf(call, index, projection);
        var limit = LimitOf(call);
        var consistent = call.Bool("ConsistentRead") ?? false;
        if (consistent && index is { Global: true })
        {
            throw DynamoException.Validation("Consistent reads are not supported on global secondary indexes");
        }
        var segment = call.Long("Segment");
        var total = call.Long("TotalSegments");
        if (segment is null != total is null)
        {
            throw DynamoException.Validation(segment is null
                ? "The TotalSegments parameter is non-null, but the Segment parameter is null"
                : "The Segment parameter is non-null, but the TotalSegments parameter is null");
        }
        if (total is < 1 or > 1_000_000)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have value {(total < 1 ? "greater than or equal to 1" : "less than or equal to 1000000")}");
        }
        if (segment is { } s && (s < 0 || s >= total))
        {
            throw DynamoException.Validation(s < 0
                ? $"1 validation error detected: Value '{s}' at 'segment' failed to satisfy constraint: Member must have value greater than or equal to 0"
                : $"The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {s} is not less than TotalSegments: {total}");
        }
        // Segment s of n covers an equal share of the 16-bit partition-key hash space.
        var from = segment is { } seg ? (int)(seg * ItemKey.Segments / total!.Value) : 0;
        var to = segment is { } seg2 ? (int)((seg2 + 1) * ItemKey.Segments / total!.Value) - 1 : ItemKey.Segments - 1;
        Item? start = call.Element("ExclusiveStartKey") is { } startElement ? ParseStartKey(table, index, startElement) : null;
        using var connection = call.Store.OpenRead();
        using var snapshot = DynamoStore.Snapshot(connection);
        IEnumerable<ItemRow> rows;
        if (index is null)
        {
            rows = DynamoStore.ScanTable(connection, table, from, to, start is null ? null : ItemKey.Of(table, start));
        }
        else
        {
            (byte[], byte[], ItemKey)? startAt = start is null ? null
                : (ItemKey.Encode(start[index.Hash.Name]), index.Range is { } ir ? ItemKey.Encode(start[ir.Name]) : [], ItemKey.Of(table, start));
            rows = DynamoStore.ScanIndex(connection, table, index, from, to, startAt);
        }
        var page = ReadPage(rows, table, index, filter, projection, select, limit, consistent);
        await WritePageAsync(call, table, index, page, select);
    }

    /// <summary>A page of results: items as built (projected or filtered), or as stored (raw JSON) when nothing reshapes them.</summary>
    private sealed record Page(List<Item> Items, List<byte[]> RawItems, int Count, int Scanned, Item? LastKey, double Units);

    /// <summary>
    /// Reads rows until the Limit (items evaluated, before the filter) or 1 MB; the key of the last row read is the
    /// page's LastEvaluatedKey when more rows follow (one row is read ahead to know). Without a filter or a
    /// projection the stored JSON is the answer: items are neither parsed nor re-serialised.
    /// </summary>
    private static Page ReadPage(IEnumerable<ItemRow> rows, TableInfo table, IndexInfo? index, Condition? filter, List<DocumentPath>? projection,
        string select, int? limit, bool consistent)
    {
        var raw = filter is null && projection is null && (index is null || select == "ALL_ATTRIBUTES" || index.ProjectionType == "ALL");
        var items = new List<Item>();
        var rawItems = new List<byte[]>();
        var count = 0;
        var scanned = 0;
        long bytes = 0;
        ItemRow? last = null;
        var stopped = false;
        foreach (var row in rows)
        {
            if (stopped)
            {
                return new Page(items, rawItems, count, scanned, KeyOfRow(table, index, last!.Value), ReadUnits((int)Math.Min(bytes, int.MaxValue), consistent));
            }
            scanned++;
            bytes += row.Size;
            last = row;
            if (raw)
            {
                count++;
                if (select != "COUNT")
                {
                    rawItems.Add(row.Json);
                }
            }
            else
            {
                var item = row.Item;
                if (filter is null || ExpressionEvaluator.Matches(filter, item))
                {
                    count++;
                    if (select != "COUNT")
                    {
                        items.Add(Shape(item, table, index, projection, select));
                    }
                }
            }
            if (scanned == limit || bytes >= PageBytes)
            {
                stopped = true;
            }
        }
        return new Page(items, rawItems, count, scanned, null, ReadUnits((int)Math.Min(bytes, int.MaxValue), consistent));
    }

    /// <summary>LastEvaluatedKey from a row's stored keys (decoded, not read from the item).</summary>
    private static Item KeyOfRow(TableInfo table, IndexInfo? index, ItemRow row)
    {
        var key = new Item(StringComparer.Ordinal) { [table.Hash.Name] = ItemKey.Decode(row.Key.Pk, table.Hash.Type) };
        if (table.Range is { } range)
        {
            key[range.Name] = ItemKey.Decode(row.Key.Sk, range.Type);
        }
        if (index is not null)
        {
            key[index.Hash.Name] = ItemKey.Decode(row.IndexPk!, index.Hash.Type);
            if (index.Range is { } indexRange)
            {
                key[indexRange.Name] = ItemKey.Decode(row.IndexSk!, indexRange.Type);
            }
        }
        return key;
    }

    /// <summary>What a result item holds: the projection asked for, or the index's projection.</summary>
    private static Item Shape(Item item, TableInfo table, IndexInfo? index, List<DocumentPath>? projection, string select)
    {
        if (projection is not null)
        {
            return ExpressionEvaluator.Project(projection, item);
        }
        if (index is null || select == "ALL_ATTRIBUTES" || index.ProjectionType == "ALL")
        {
            return item;
        }
        var kept = ItemKey.KeyOf(table, item, index);
        foreach (var name in index.NonKeyAttributes)
        {
            if (item.TryGetValue(name, out var value))
            {
                kept[name] = value;
            }
        }
        return kept;
    }

    private static Task WritePageAsync(DynamoCall call, TableInfo table, IndexInfo? index, Page page, string select) => call.RespondAsync(w =>
    {
        if (select != "COUNT")
        {
            w.WriteStartArray("Items");
            foreach (var item in page.Items)
            {
                AttributeValue.WriteMap(w, item);
            }
            foreach (var json in page.RawItems)
            {
                w.WriteRawValue(json, skipInputValidation: true);
            }
            w.WriteEndArray();
        }
        w.WriteNumber("Count", page.Count);
        w.WriteNumber("ScannedCount", page.Scanned);
        if (page.LastKey is { } last)
        {
            WriteItem(w, "LastEvaluatedKey", last);
        }
        WriteConsumedCapacity(w, call, table.Name, page.Units);
        _ = index;
    });

    private static IndexInfo? IndexOf(DynamoCall call, TableInfo table)
    {
        if (call.String("IndexName") is not { } name)
        {
            return null;
        }
        return table.Index(name) ?? throw DynamoException.Validation($"The table does not have the specified index: {name}");
    }

    private static int? LimitOf(DynamoCall call)
    {
        var limit = call.Long("Limit");
        if (limit is < 1)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1");
        }
        return limit is null ? null : (int)Math.Min(limit.Value, int.MaxValue);
    }

    private static string SelectOf(DynamoCall call, IndexInfo? index, List<DocumentPath>? projection)
    {
        var select = call.String("Select");
        if (select is not (null or "ALL_ATTRIBUTES" or "ALL_PROJECTED_ATTRIBUTES" or "SPECIFIC_ATTRIBUTES" or "COUNT"))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{select}' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]");
        }
        if (projection is not null && select is not (null or "SPECIFIC_ATTRIBUTES"))
        {
            throw DynamoException.Validation($"Cannot specify the ProjectionExpression when choosing to get {select}");
        }
        if (select == "SPECIFIC_ATTRIBUTES" && projection is null)
        {
            throw DynamoException.Validation("SPECIFIC_ATTRIBUTES requires ProjectionExpression or AttributesToGet");
        }
        if (select == "ALL_PROJECTED_ATTRIBUTES" && index is null)
        {
            throw DynamoException.Validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName");
        }
        if (select == "ALL_ATTRIBUTES" && index is { Global: true, ProjectionType: not "ALL" })
        {
            throw DynamoException.Validation($"One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {index.Name} because its projection type is not ALL");
        }
        return select ?? (projection is not null ? "SPECIFIC_ATTRIBUTES" : index is null ? "ALL_ATTRIBUTES" : "ALL_PROJECTED_ATTRIBUTES");
    }

    /// <summary>ExclusiveStartKey: the table's key attributes (and the index's, for an index), typed.</summary>
    private static Item ParseStartKey(TableInfo table, IndexInfo? index, JsonElement element)
    {
        var key = AttributeValue.ParseMap(element);
        var expected = new List<KeyAttribute> { table.Hash };
        if (table.Range is not null)
        {
            expected.Add(table.Range);
        }
        if (index is not null)
        {
            expected.Add(index.Hash);
            if (index.Range is not null)
            {
                expected.Add(index.Range);
            }
        }
        var names = expected.Select(static e => e.Name).Distinct().ToList();
        if (key.Count != names.Count || expected.Any(e => !key.TryGetValue(e.Name, out var v) || v.Kind != e.Type))
        {
            throw DynamoException.Validation("The provided starting key is invalid: The provided key element does not match the schema");
        }
        return key;
    }

    /// <summary>
    /// A KeyConditionExpression: <c>hash = :v</c>, optionally AND one condition on the sort key (=, &lt;, &lt;=,
    /// &gt;, &gt;=, BETWEEN, begins_with), turned into the partition key and sort-key bounds.
    /// </summary>
    private static (AttributeValue Hash, SortRange Range) KeyConditions(Condition condition, KeyAttribute hash, KeyAttribute? range)
    {
        var parts = new List<Condition>();
        void Flatten(Condition c)
        {
            if (c is Logical { Operator: "AND" } and)
            {
                Flatten(and.Left);
                Flatten(and.Right!);
            }
            else
            {
                parts.Add(c);
            }
        }
        Flatten(condition);
        AttributeValue? hashValue = null;
        var sortRange = new SortRange(null, false, null, false);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in parts)
        {
            var (attribute, op, values) = KeyPart(part);
            if (!seen.Add(attribute))
            {
                throw DynamoException.Validation("KeyConditionExpressions must only contain one condition per key");
            }
            if (attribute == hash.Name)
            {
                if (op != "=")
                {
                    throw DynamoException.Validation("Query key condition not supported");
                }
                if (values[0].Kind != hash.Type)
                {
                    throw DynamoException.Validation("One or more parameter values were invalid: Condition parameter type does not match schema type");
                }
                hashValue = values[0];
                continue;
            }
            if (range is null || attribute != range.Name)
            {
                throw DynamoException.Validation($"Query condition missed key schema element: {(hashValue is null && !parts.Skip(1).Any() ? hash.Name : range?.Name ?? hash.Name)}");
            }
            if (values.Any(v => v.Kind != range.Type))
            {
                throw DynamoException.Validation("One or more parameter values were invalid: Condition parameter type does not match schema type");
            }
            var encoded = values.Select(ItemKey.Encode).ToList();
            sortRange = op switch
            {
                "=" => new SortRange(encoded[0], true, encoded[0], true),
                "<" => new SortRange(null, false, encoded[0], false),
                "<=" => new SortRange(null, false, encoded[0], true),
                ">" => new SortRange(encoded[0], false, null, false),
                ">=" => new SortRange(encoded[0], true, null, false),
                "BETWEEN" => new SortRange(encoded[0], true, encoded[1], true),
                _ => range.Type == AttributeKind.N
                    ? throw DynamoException.Validation("Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N")
                    : new SortRange(encoded[0], true, ItemKey.PrefixEnd(encoded[0]), false),
            };
        }
        if (hashValue is null)
        {
            throw DynamoException.Validation($"Query condition missed key schema element: {hash.Name}");
        }
        return (hashValue, sortRange);
    }

    private static (string Attribute, string Op, List<AttributeValue> Values) KeyPart(Condition condition)
    {
        static string Single(Operand operand) => operand is PathOperand { Path.IsNested: false } p ? p.Path.Head
            : operand is PathOperand ? throw DynamoException.Validation("KeyConditionExpressions cannot have conditions on nested attributes")
            : throw DynamoException.Validation("Invalid condition in KeyConditionExpression: No key attribute specified");
        switch (condition)
        {
            case Logical logical:
                throw DynamoException.Validation($"Invalid operator used in KeyConditionExpression: {logical.Operator}");
            case In:
                throw DynamoException.Validation("Invalid operator used in KeyConditionExpression: IN");
            case Comparison { Operator: "<>" }:
                throw DynamoException.Validation("Invalid operator used in KeyConditionExpression: <>");
            case Comparison comparison:
            {
                if (comparison.Left is FunctionOperand || comparison.Right is FunctionOperand)
                {
                    throw DynamoException.Validation("KeyConditionExpressions cannot contain nested operations");
                }
                if (comparison.Left is PathOperand && comparison.Right is PathOperand)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition");
                }
                if (comparison.Left is ValueOperand flipped && comparison.Right is PathOperand)
                {
                    // ":v < a" is "a > :v".
                    var op = comparison.Operator switch { "<" => ">", "<=" => ">=", ">" => "<", ">=" => "<=", _ => comparison.Operator };
                    return (Single(comparison.Right), op, [flipped.Value]);
                }
                if (comparison.Right is not ValueOperand value)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: No key attribute specified");
                }
                return (Single(comparison.Left), comparison.Operator, [value.Value]);
            }
            case Between between:
                if (between.Value is not PathOperand)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: BETWEEN operator must have the key attribute as its first operand");
                }
                if (between.Low is not ValueOperand low || between.High is not ValueOperand high)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition");
                }
                return (Single(between.Value), "BETWEEN", [low.Value, high.Value]);
            case FunctionCondition { Name: "begins_with" } beginsWith:
                if (beginsWith.Arguments[0] is not PathOperand)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: begins_with operator must have the key attribute as its first operand");
                }
                if (beginsWith.Arguments[1] is not ValueOperand prefix)
                {
                    throw DynamoException.Validation("Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition");
                }
                return (Single(beginsWith.Arguments[0]), "begins_with", [prefix.Value]);
            case FunctionCondition function:
                throw DynamoException.Validation($"Invalid operator used in KeyConditionExpression: {function.Name}");
        }
        throw DynamoException.Validation("Query key condition not supported");
    }

    /// <summary>A Query's filter may not name the key attributes (they belong in the key condition).</summary>
    private static void CheckFilterKeys(Condition filter, KeyAttribute hash, KeyAttribute? range)
    {
        foreach (var path in Paths(filter))
        {
            if (path.Head == hash.Name || path.Head == range?.Name)
            {
                throw DynamoException.Validation($"Filter Expression can only contain non-primary key attributes: Primary key attribute: {path.Head}");
            }
        }
    }

    private static IEnumerable<DocumentPath> Paths(Condition condition) => condition switch
    {
        Logical l => Paths(l.Left).Concat(l.Right is null ? [] : Paths(l.Right)),
        Comparison c => OperandPaths(c.Left).Concat(OperandPaths(c.Right)),
        Between b => OperandPaths(b.Value).Concat(OperandPaths(b.Low)).Concat(OperandPaths(b.High)),
        In i => OperandPaths(i.Value).Concat(i.List.SelectMany(OperandPaths)),
        FunctionCondition f => f.Arguments.SelectMany(OperandPaths),
        _ => [],
    };

    private static IEnumerable<DocumentPath> OperandPaths(Operand operand) => operand switch
    {
        PathOperand p => [p.Path],
        FunctionOperand f => f.Arguments.SelectMany(OperandPaths),
        _ => [],
    };
}
